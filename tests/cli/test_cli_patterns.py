"""The routing patterns from the command line (a subprocess, as a user runs it): a route
by input size, a pipeline variant with a runner hint and a shadow in a namespace, the
price table; bad input exits 2 with the reason and changes nothing."""

from __future__ import annotations

import json

from tests.helpers import run_cli as cli

SIZE_RULES = [
    "--arg", "width:number=1024", "--arg", "height:number=1024",
    "--rule", "small: width * height <= 1048576 -> app:abplatform/model-v1",
    "--rule", "large: else -> experiment:big",
]  # fmt: skip


def test_a_route_and_a_pipeline_experiment_from_the_cli(db_url: str) -> None:
    made = cli(
        db_url, "experiment", "create", "big",
        "-v", "control:v2:abplatform/model-v2:control", "-v", "treatment:v1up:abplatform/model-v1",
        "--set", "treatment.width=512", "--set", "treatment.height=512",
        "--step", "treatment=abplatform/upscale,image_url=image.url,scale:=2",
        "--step", "treatment=abplatform/remove-background,image_url=image.url",
        "--hint", "treatment={style}", "--shadow", "control=abplatform/model-v1@10",
        "--namespace", "sizes:0-50", "--start",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = " ".join(made.stdout.split())
    assert "namespace sizes 0-50%" in out
    assert "abplatform/model-v1 → abplatform/upscale → abplatform/remove-background" in out
    assert "runner hint {style}" in out and "shadow 10% → abplatform/model-v1" in out
    shown = json.loads(cli(db_url, "experiment", "show", "big", "--json").stdout)
    treatment = shown["variants"][1]
    assert treatment["arguments"] == {"width": 512, "height": 512}
    assert shown["namespace"] == ["sizes", 0.0, 50.0]
    route = cli(db_url, "route", "create", "images", *SIZE_RULES)
    assert route.returncode == 0, route.stderr
    assert "width * height <= 1048576" in route.stdout and "experiment big" in route.stdout
    report = json.loads(cli(db_url, "route", "show", "images", "--json").stdout)
    assert [r["name"] for r in report["rule_specs"]] == ["small", "large"]
    assert report["rules"] == []  # no traffic yet
    updated = cli(db_url, "route", "update", "images", *SIZE_RULES[:4],
                  "--rule", "all: else -> app:abplatform/model-v2", "--version", "1")  # fmt: skip
    assert updated.returncode == 0 and "version=2" in updated.stdout, updated.stderr
    audit = cli(db_url, "route", "audit", "images")
    assert "route_create" in audit.stdout and "route_update" in audit.stdout
    prices = json.loads(cli(db_url, "prices", "--json").stdout)
    v2 = next(p for p in prices if p["app"] == "abplatform/model-v2")
    assert (v2["machine"], v2["usd_per_hour"]) == ("GPU-H100", 1.89)
    assert v2["source"].startswith("fal public list price")


BAD = [
    (["route", "create", "r", "--arg", "width:number", "--rule",
      "small: widht < 5 -> app:abplatform/model-v1"], "unknown argument 'widht'"),
    (["route", "create", "r", "--rule", "small: x -> app:abplatform/model-v1"],
     "unknown argument 'x' (declared arguments: none declared)"),
    (["route", "create", "r", "--rule", "small width < 5"], "--rule must be NAME: CONDITION"),
    (["route", "create", "r", "--rule", "a: else -> bogus:1"], "--rule target 'bogus:1'"),
    (["route", "create", "r", "--rule", "a: else -> experiment:nope"],
     "unknown experiment 'nope'"),
    (["route", "create", "r", "--arg", "w:int", "--rule", "a: else -> app:abplatform/model-v1"],
     "--arg must be NAME:TYPE[=DEFAULT]"),
    (["route", "update", "nope", "--rule", "a: else -> app:abplatform/model-v1"],
     "unknown route 'nope'"),
    (["experiment", "create", "x", "-v", "c:v1:abplatform/model-v1:control",
      "-v", "t:v2:abplatform/model-v2", "--step", "t=abplatform/nope"],
     "unknown backend app id 'abplatform/nope'"),
    (["experiment", "create", "x", "-v", "c:v1:abplatform/model-v1:control",
      "-v", "t:v2:abplatform/model-v2", "--shadow", "t=abplatform/model-v1"],
     "--shadow must be KEY=APP@PERCENT"),
    (["experiment", "create", "x", "-v", "c:v1:abplatform/model-v1:control",
      "-v", "t:v2:abplatform/model-v2", "--namespace", "sizes:50-10"],
     "namespace slice 50-10 is empty"),
    (["experiment", "create", "x", "-v", "c:v1:abplatform/model-v1:control",
      "-v", "t:v2:abplatform/model-v2", "--hint", "z={lora}"], "--hint names variant 'z'"),
]  # fmt: skip


def test_bad_pattern_input_exits_2_with_the_reason_and_changes_nothing(db_url: str) -> None:
    for args, message in BAD:
        out = cli(db_url, *args)
        assert out.returncode == 2, (args, out.stdout)
        assert message in " ".join(out.stderr.split()), (args, out.stderr)
    assert "r" not in cli(db_url, "route", "list").stdout.split()
    assert json.loads(cli(db_url, "experiment", "list", "--json").stdout) == []
