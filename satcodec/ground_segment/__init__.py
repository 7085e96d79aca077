"""Ground segment: sensor-noise model, ground denoiser, joint (on-board denoising) codec
training, and the decode → denoise → COG + STAC pipeline.

The ground segment may import the codec; the codec never imports the ground segment.
"""

from satcodec.ground_segment.noise import (
    NoiseParams,
    estimate_noise,
    load_sensor_table,
    noise_std_map,
    sensor_noise,
    simulate_noise,
)

__all__ = [
    "NoiseParams",
    "estimate_noise",
    "load_sensor_table",
    "noise_std_map",
    "sensor_noise",
    "simulate_noise",
]
