"""The ``satcodec`` command line (issue 19 item 3, issue 21): one package, every documented
command, shared -q/-v, --version, exit codes, '-' for stdin/stdout, no argparse in the library."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from satcodec.cli import build_parser, main
from tests.conftest import ROOT, SAMPLE

# every command the README, the model cards and the docs show (and the groups' subcommands)
COMMANDS = [
    ("encode",),
    ("decode",),
    ("info",),
    ("models",),
    ("demo",),
    ("train",),
    ("tune-decoder",),
    ("tune-encoder",),
    ("denoise",),
    ("ground",),
    ("ground-train", "denoiser"),
    ("ground-train", "joint"),
    ("ground-train", "ship"),
    ("ground-train", "export-checkpoint"),
    ("ship", "codec"),
    ("ship", "joint"),
    ("ship", "denoiser"),
    ("export",),
    ("profile",),
    ("eval",),
    ("research", "inna-bench"),
    ("research", "abc-bench"),
    ("research", "recsys-bench"),
    ("dev", "laplace-table"),
]


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every runnable command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, p in subs[0].choices.items():
        yield from _leaves(p, (*path, name))


def test_every_documented_command_exists_and_nothing_else():
    leaves = dict(_leaves(build_parser()))
    assert sorted(leaves) == sorted(COMMANDS)
    for path, p in leaves.items():
        assert p.get_default("func") is not None, path
        assert p.prog == "satcodec " + " ".join(path)


def _documented_lines() -> list[tuple[str, str]]:
    """(file, command line) of every ``satcodec ...`` line in a fenced block of the README,
    docs/, the model cards and bench/results, and every card's ``- command:`` line."""
    files = [ROOT / "README.md", *(ROOT / "bench" / "results").glob("*.md")]
    files += [*(ROOT / "satcodec").rglob("*.md"), *(ROOT / "docs").glob("*.md")]
    found = []
    for f in files:
        fenced = False
        lines = f.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
        for line in lines:
            if line.startswith("```"):
                fenced = not fenced
                continue
            text = line.strip()
            if text.startswith("- command: satcodec "):
                text, fenced_or_card = text[len("- command: ") :], True
            else:
                fenced_or_card = fenced
            if fenced_or_card and text.startswith("satcodec ") and "..." not in text:
                found.append((str(f.relative_to(ROOT)), text))
    return found


def test_every_documented_command_line_parses():
    import shlex

    lines = _documented_lines()
    assert any("ground-train joint" in t for _, t in lines)
    assert any("ground-train ship" in t for _, t in lines)
    assert any("tune-decoder" in t for _, t in lines)
    parser = build_parser()
    for where, text in lines:
        argv = shlex.split(text, comments=True)[1:]
        cut = [i for i, t in enumerate(argv) if t in ("<", ">", "|")]  # shell redirections
        argv = argv[: cut[0]] if cut else argv
        try:
            assert parser.parse_args(argv).func is not None
        except SystemExit as exc:  # --version, --help: 0
            if exc.code != 0:
                pytest.fail(f"{where}: {text}")


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_quiet_and_verbose_on_every_command(path):
    parser = dict(_leaves(build_parser()))[path]
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"-q", "--quiet", "-v", "--verbose"} <= flags
    with pytest.raises(SystemExit) as exc:  # argparse: -q and -v exclude each other
        build_parser().parse_args([*path, "-q", "-v"])
    assert exc.value.code == 2


def test_quiet_and_verbose_reach_the_command_from_either_place():
    p = build_parser()
    a = p.parse_args(["info", "x.satc"])
    assert (a.quiet, a.verbose) == (False, 0)
    assert p.parse_args(["info", "x.satc", "-q"]).quiet
    assert p.parse_args(["-q", "info", "x.satc"]).quiet
    assert p.parse_args(["-v", "research", "recsys-bench"]).verbose == 1
    assert p.parse_args(["research", "recsys-bench", "-vv"]).verbose == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    from satcodec.cli import version

    assert capsys.readouterr().out.strip() == f"satcodec {version()}"
    assert re.fullmatch(r"\d+(\.\d+)+\S*", version())


def test_help_says_what_the_tool_is_for_and_its_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "satellite images" in out and "GeoTIFF" in out
    for line in ("0    done", "1    done in part", "2    error", "130  interrupted"):
        assert line in out


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.satc")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("satcodec: error:") and err.count("\n") == 1
    # what used to be SystemExit in the library is a one-line error of the CLI now
    args = ["ground-train", "joint", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*args, "--refine", "48"]) == 2
    assert "--refine takes CxL" in capsys.readouterr().err
    assert main([*args, "--step-range", "1"]) == 2
    assert "--step-range takes LO,HI" in capsys.readouterr().err
    assert main(["research", "abc-bench", "--budgets", "1k"]) == 2
    assert "--budgets" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a usage error: argparse, status 2
        main(["encode"])
    assert exc.value.code == 2


def test_verbose_prints_timings(tmp_path, capsys):
    assert main(["dev", "laplace-table", "--out", str(tmp_path / "t.npz"), "-v"]) == 0
    out, err = capsys.readouterr()
    assert "wrote" in out and "laplace-table took" in err
    assert main(["dev", "laplace-table", "--out", str(tmp_path / "t.npz"), "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    from satcodec.entropy.table import TABLE_PATH

    assert (tmp_path / "t.npz").read_bytes() == Path(TABLE_PATH).read_bytes()


# --- '-' for stdin / stdout -------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_tif(tmp_path_factory) -> Path:
    from satcodec.raster import RasterMeta, open_raster, write_raster

    d = tmp_path_factory.mktemp("stdio")
    with open_raster(SAMPLE) as r:
        crop, meta = r.read()[:, :128, :160], r.meta
    small = RasterMeta.from_json_dict({**meta.to_json_dict(), "height": 128, "width": 160})
    write_raster(d / "small.tif", crop, small)
    return d / "small.tif"


def _cli(*args, stdin: bytes | None = None, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "satcodec", *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def test_stdin_stdout_round_trip(small_tif, tiny_model, tmp_path):
    import numpy as np
    import rasterio

    env = {"SATCODEC_MODEL_PATH": str(tiny_model.parent)}
    enc = _cli(
        "encode", "-", "-o", "-", "--quality", "50", "--model", tiny_model, "--tile", "64",
        stdin=small_tif.read_bytes(), env=env,
    )  # fmt: skip
    assert enc.returncode == 0, enc.stderr
    stream = enc.stdout
    assert stream[:4] == b"SATC"
    assert b"bpp" in enc.stderr  # the message goes to stderr when stdout carries the data
    # the same stream as from files
    (tmp_path / "s.satc").write_bytes(stream)
    info = _cli("info", "-", "--json", stdin=stream, env=env)
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["height"] == 128 and described["width"] == 160
    assert described["bytes"] == len(stream) and described["damaged_tiles"] == []
    dec = _cli("decode", "-", "-o", "-", "-q", stdin=stream, env=env)
    assert dec.returncode == 0, dec.stderr
    assert dec.stdout[:2] in (b"II", b"MM") and dec.stderr == b""
    (tmp_path / "d.tif").write_bytes(dec.stdout)
    with rasterio.open(small_tif) as a, rasterio.open(tmp_path / "d.tif") as b:
        assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
        assert np.abs(a.read().astype(int) - b.read().astype(int)).mean() < 200
    # and from a file to stdout and back: the same decoded pixels
    dec2 = _cli("decode", tmp_path / "s.satc", "-o", tmp_path / "d2.tif", "-q", env=env)
    assert dec2.returncode == 0 and dec2.stdout == b""
    with rasterio.open(tmp_path / "d.tif") as a, rasterio.open(tmp_path / "d2.tif") as b:
        assert np.array_equal(a.read(), b.read())


def test_stdin_errors_write_nothing_to_stdout(tiny_model):
    r = _cli("decode", "-", "-o", "-", stdin=b"SATC" + bytes(100))
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.decode().startswith("satcodec: error:") and b"Traceback" not in r.stderr
    r = _cli("info", "-", stdin=b"")
    assert r.returncode == 2 and b"empty" in r.stderr


def test_info_prints_what_the_library_describes(small_tif, tiny_model, tmp_path, capsys):
    from satcodec.api import describe, encode_file

    stream = tmp_path / "s.satc"
    encode_file(small_tif, stream, quality=50, model=tiny_model, tile=64)
    assert main(["info", str(stream), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(describe(stream)))
    d = describe(stream)
    assert d["bpp"] == pytest.approx(8 * stream.stat().st_size / (128 * 160))
    assert d["tiles"] == 2 * 3 and d["version"] == 1
    cut = tmp_path / "cut.satc"
    cut.write_bytes(stream.read_bytes()[:-40])
    assert main(["info", str(cut)]) == 1  # done in part: a tile is missing
    assert "damaged_tiles" in capsys.readouterr().out


# --- no argparse in the library ---------------------------------------------------------------
def _without_main_block(text: str) -> str:
    return text.split('\nif __name__ == "__main__":')[0]


def test_no_argparse_or_exit_outside_the_cli_package():
    pkg = ROOT / "satcodec"
    offenders = []
    for path in pkg.rglob("*.py"):
        if (pkg / "cli") in path.parents or path.name == "__main__.py":
            continue
        text = path.read_text(encoding="utf-8")
        if "argparse" in text:
            offenders.append(f"{path}: argparse")
        if re.search(r"raise SystemExit|sys\.exit\(|\bexit\(", _without_main_block(text)):
            offenders.append(f"{path}: exits the process")
    assert not offenders
    assert not (pkg / "cli.py").exists() and not (pkg / "export" / "cli.py").exists()


def test_an_encoder_budget_no_model_fits_is_refused_plainly(small_tif, tmp_path):
    r = _cli("encode", small_tif, "--bpp", "1", "--max-encoder-macs", "100", "-o", tmp_path / "x")
    assert r.returncode == 2 and not (tmp_path / "x.satc").exists()
    assert b"no model's analysis fits 100 MAC/pixel" in r.stderr and b"Traceback" not in r.stderr


def test_the_deadzone_option_reaches_the_encoder(small_tif, tmp_path):
    r = _cli("encode", small_tif, "--quality", "50", "--deadzone", "0.7", "-o", tmp_path / "x")
    assert r.returncode == 2 and not (tmp_path / "x.satc").exists()
    assert b"deadzone must be in (-0.5, 0.5)" in r.stderr and b"Traceback" not in r.stderr
    sizes = []
    for dz in ("0", "0.2"):
        out = tmp_path / f"dz{dz}.satc"
        assert (
            _cli("encode", small_tif, "--quality", "50", "--deadzone", dz, "-o", out).returncode
            == 0
        )
        sizes.append(out.stat().st_size)
    assert sizes[1] < sizes[0]  # a wider deadzone, fewer bits at the same step
