"""Layering rules of the package: research and the codec never load each other."""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded_after(imports: str) -> list[str]:
    code = f"import json, sys\n{imports}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in json.loads(out.stdout.strip().splitlines()[-1]) if m.startswith("satcodec")]


def test_research_and_the_trainer_do_not_load_the_codec():
    loaded = _loaded_after(
        "import satcodec.research.inna, satcodec.research.abc, satcodec.research.recsys\n"
        "import satcodec.train"
    )
    assert "satcodec.research.recsys" in loaded  # the imports really ran
    assert not [m for m in loaded if m.startswith("satcodec.codec") or m == "satcodec.api"]


def test_the_codec_does_not_load_research():
    loaded = _loaded_after("import satcodec\nsatcodec.encode\nimport satcodec.cli")
    assert "satcodec.codec.pipeline" in loaded
    assert not [m for m in loaded if m.startswith("satcodec.research")]
