"""Give a fast-encoder model the ground decoder of the model it was derived from, again.

``satcodec tune-encoder`` trains a narrow analysis in front of its init's synthesis, frozen:
a fast model's ground decoder is its init's, weight for weight. When that init's decoder is
re-tuned (``satcodec tune-decoder``; the analysis, and so every stream, unchanged), the fast
model keeps the old decoder. This swaps in the new synthesis (the analysis stays: every
stream of the fast model is the same symbols), re-measures the card's held-out table and the
``rd`` metadata rate control picks models by, records the old id among the streams it decodes
(``decodes_model_ids``), and installs weights and card atomically. What it buys, on the same
streams: ``bench/decoder_retune.py --candidate NAME=PATH`` with the weights this writes to
``--dry-run``'s path.

    python bench/adopt_decoder.py --model fast-s8-l1e-3 --decoder reduced-s8-l1e-3 \\
        --data ../shared/data/sat
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
MODELS = REPO / "satcodec" / "models"


def swapped(model: str, decoder: str):
    """(the model with ``decoder``'s synthesis, its old info, the decoder's info)."""
    from satcodec.codec.registry import load_model

    net, info = load_model(model)
    dec, dec_info = load_model(decoder)
    if net.config.to_dict() | {"analysis_hidden": 0, "analysis_activation": None} != (
        dec.config.to_dict() | {"analysis_hidden": 0, "analysis_activation": None}
    ):
        raise SystemExit(f"{model} and {decoder} differ beyond the analysis")
    state = net.state_dict()
    for k, v in dec.state_dict().items():
        if k.startswith("synthesis_transform."):
            state[k] = v.clone()
    net.load_state_dict(state)
    return net.eval(), info, dec_info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the shipped fast model")
    p.add_argument("--decoder", required=True, help="the shipped model whose synthesis it takes")
    p.add_argument("--data", type=Path, required=True, help="folder of the dev rasters")
    p.add_argument("--dry-run", type=Path, help="write the weights here instead of installing")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    from remeasure_cards import rd_of_card, remeasure

    from satcodec.codec.registry import DECODES_KEY, decoded_model_ids, save_model
    from satcodec.shipping import install

    net, info, dec_info = swapped(a.model, a.decoder)
    meta = dict(info.meta)
    meta[DECODES_KEY] = list(dict.fromkeys([info.model_id, *decoded_model_ids(info)]))
    meta["synthesis_from"] = {"model": dec_info.name, "model_id": dec_info.model_id}
    if a.dry_run:
        print(save_model(a.dry_run, net, meta))
        return 0
    t0 = time.time()
    card = MODELS / f"{a.model}.md"
    weights = MODELS / f"{a.model}.safetensors"
    # measure with the new weights beside a copy of the card (outside the package), then
    # install weights and card together
    with tempfile.TemporaryDirectory(prefix="satcodec-adopt-") as tmp:
        scratch_card = Path(tmp) / card.name
        scratch_card.write_text(card.read_text())
        save_model(scratch_card.with_suffix(".safetensors"), net, meta)
        text = remeasure(scratch_card, a.data)
    meta["rd"] = rd_of_card(text)
    line = (
        f"- ground decoder: the synthesis of {dec_info.name} (id `{dec_info.model_id[:12]}`), "
        "adopted after its decoder was re-tuned (`python bench/adopt_decoder.py --model "
        f"{a.model} --decoder {dec_info.name} --data DATA`); the analysis is unchanged, so this "
        "model decodes the streams of the ids it replaced ("
        + ", ".join(f"`{i[:12]}`" for i in meta[DECODES_KEY])
        + "); table and `rd` metadata measured with it"
    )
    text = re.sub(r"\n- ground decoder: the synthesis of [^\n]*", "", text)
    text = re.sub(r"(\n- data: )", "\n" + line + r"\1", text, count=1)
    # the table note of remeasure_cards says the rd metadata is the shipping measurement's:
    # here it is this one's
    text = re.sub(
        r"\nRe-measured [0-9-]+ with the encoder's default band normalisation[^\n]*\n", "\n", text
    )
    text = re.sub(r"\n{3,}", "\n\n", text)

    def write(tmp: Path) -> str:
        return save_model(tmp, net, meta)

    def card_text(model_id: str) -> str:
        return re.sub(r"- model id: `[0-9a-f]{32}`", f"- model id: `{model_id}`", text, count=1)

    model_id = install(weights, write, card_text)
    print(f"{a.model}: {info.model_id[:12]} -> {model_id[:12]} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
