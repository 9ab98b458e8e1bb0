"""`lethe demo`: the main job end to end on the embedded default, over HTTP, as a compliance user would.

1. prepare the mini-canvas testbed (reuse the one in LETHE_DATA_DIR, else install the shipped one;
   `--build` trains a fresh one), 2. start `lethe serve` (API + in-process worker, SQLite, file store) on
   a free port, 3. create a key, register the model, file a takedown request, follow it live, fetch the
   adapter, fused model, grid and signed certificate, 4. print before/after and the audit verification.
Exit 0 only if the erasure verified.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.cli.demo_client import ApiError, LetheClient, wait_ready
from core.config import Settings, get_settings
from core.timeutil import utcnow

console = Console(stderr=False)
TERMINAL = {"succeeded", "failed", "cancelled", "rejected"}


class DemoFailed(RuntimeError):
    pass


def demo(
    concept: Annotated[
        str, typer.Option(help="What to erase, as KIND:NAME — object:<name> or style:<name> (lethe testbed concepts).")
    ] = "object:star",
    surrogate: Annotated[
        str | None, typer.Option(help="What the concept should become instead (default: the engine's neutral one).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="SPARE distillation steps (default: the engine's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the erasure.")] = 0,
    build: Annotated[
        bool, typer.Option("--build", help="Train a fresh testbed into LETHE_DATA_DIR/testbed first (long).")
    ] = False,
    profile: Annotated[str, typer.Option(help="Testbed profile for --build.")] = "full",
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 1800.0,
) -> None:
    """Erase one concept from the mini-canvas testbed through the real service and show the proof."""
    settings = get_settings()
    kind, _, name = concept.partition(":")
    if kind not in {"object", "style"} or not name:
        raise typer.BadParameter("use object:<name> or style:<name>", param_hint="--concept")
    if build:
        from core.testbed.profiles import PROFILES

        if profile not in PROFILES:
            raise typer.BadParameter(f"choose from {', '.join(PROFILES)}", param_hint="--profile")
    try:
        ok = _run(settings, kind, name, surrogate, steps, seed, build, profile, timeout)
    except (DemoFailed, ApiError, TimeoutError) as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        raise typer.Exit(1)
    raise typer.Exit(0 if ok else 1)


def _run(settings: Settings, kind: str, name: str, surrogate: str | None, steps: int | None, seed: int,
         build: bool, profile: str, timeout: float) -> bool:
    started = time.monotonic()
    deadline = started + timeout
    model_dir = _prepare_testbed(settings, kind, name, build, profile)
    out = settings.data_dir / "demo"
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = _start_server(port, out / "serve.log")
    try:
        console.print(f"[bold]2/4[/] embedded service (API + in-process worker) on {base_url}")
        console.print(f"    server log {out / 'serve.log'}")
        # The server migrates the database as it starts: create the key only once it is ready.
        wait_ready(base_url, timeout=120)
        key = _create_key(settings)
        client = LetheClient(base_url, key)
        try:
            return _compliance_flow(client, settings, model_dir, kind, name, surrogate, steps, seed, out, deadline,
                                    started)
        finally:
            client.close()
    finally:
        _stop_server(server)


def _prepare_testbed(settings: Settings, kind: str, name: str, build: bool, profile: str) -> Path:
    from core.testbed.canvas import OBJECTS, STYLES
    from core.testbed.paths import built_dir, testbed_dir

    names = OBJECTS if kind == "object" else STYLES
    if name not in names:
        raise DemoFailed(f"{kind} {name!r} is not in the testbed; choose from: {', '.join(names)}")
    if build:
        from core.testbed.profiles import profile_named
        from core.testbed.train import build as build_testbed

        console.print(f"[bold]1/4[/] training a fresh testbed (profile {profile}) into {built_dir()}")
        build_testbed(built_dir(), profile_named(profile))
    source = testbed_dir()
    if not (source / "manifest.json").is_file():
        raise DemoFailed(f"no testbed found at {source}; run `lethe testbed build` or `lethe demo --build`")
    # Registration only accepts models under LETHE_MODEL_ROOTS: install a copy there.
    target = settings.model_roots[0] / "mini-canvas"
    manifest = (source / "manifest.json").read_bytes()
    if not (target / "manifest.json").is_file() or (target / "manifest.json").read_bytes() != manifest:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    console.print(f"[bold]1/4[/] testbed ready: {target} (from {source})")
    return target / "pipeline"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    env = {**os.environ, "LETHE_BROKER_URL": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _create_key(settings: Settings) -> str:
    """The operator's bootstrap step (`lethe keys create`), done in-process on the same database."""
    from core.db import get_engine, unit_of_work
    from core.tenancy import service
    from core.tenancy.schemas import ALL_SCOPES

    with unit_of_work(get_engine(settings)) as session:
        tenant = service.get_or_create_tenant(session, "demo-compliance")
        _, plaintext = service.create_key(session, settings, tenant, ",".join(ALL_SCOPES), name="lethe demo")
    return plaintext


def _compliance_flow(client: LetheClient, settings: Settings, model_dir: Path, kind: str, name: str,
                     surrogate: str | None, steps: int | None, seed: int, out: Path, deadline: float,
                     started: float) -> bool:
    console.print("[bold]3/4[/] over HTTP: register the model, file the takedown request, follow it")
    model = client.register_model(
        f"mini-canvas-{utcnow():%Y%m%d%H%M%S}", model_dir.as_uri(), "The mini-canvas testbed pipeline", ["testbed"]
    )
    while model["status"] == "pending":
        _check_deadline(deadline, "model validation")
        time.sleep(0.5)
        model = client.model(model["id"])
    if model["status"] != "ready":
        raise DemoFailed(f"model validation failed: {model.get('status_reason')}")
    console.print(f"    model {model['id']} ready · {model['architecture']} · fingerprint {model['fingerprint'][:16]}…")

    now = utcnow()
    params: dict[str, Any] = {"seed": seed}
    if steps is not None:
        params["steps"] = steps
    body = {
        "model_id": model["id"],
        "concepts": [{"target": name, "kind": kind, **({"surrogate": surrogate} if surrogate else {})}],
        "method": "spare",
        "params": params,
        "legal": {
            "regime": "dmca",
            "basis": f"Notice of infringing reproduction of the '{name}' {kind} (17 U.S.C. § 512(c))",
            "external_reference": f"DEMO-{now:%Y%m%d-%H%M%S}",
            "requester": {"name": "Demo Rights Holder", "email": "legal@example.com", "organization": "Example"},
            "received_at": now.isoformat(),
            "due_at": (now + timedelta(days=7)).isoformat(),
        },
        "labels": ["demo"],
    }
    request = client.submit_erasure(body)
    console.print(f"    request {request['id']} {request['status']}")
    request = _follow(client, request, deadline)
    if request["status"] != "succeeded":
        raise DemoFailed(f"the erasure ended {request['status']}: {request.get('error') or 'no reason given'}")

    console.print("[bold]4/4[/] results")
    folder = out / request["id"]
    links = client.artifact_links(request["id"])["artifacts"]
    paths = {a["name"]: client.download(a["url"], folder / a["name"]) for a in links}
    certificate = client.certificate(request["id"])
    cert_path = folder / "certificate.json"
    cert_path.write_text(json.dumps(certificate, indent=2))
    cert_ok = _verify_certificate(certificate, client.public_key())
    audit = client.verify_audit()
    _print_results(request, paths, folder, cert_path, cert_ok, audit, time.monotonic() - started)
    return bool(cert_ok and audit.get("ok"))


def _follow(client: LetheClient, request: dict[str, Any], deadline: float) -> dict[str, Any]:
    with Progress(
        TextColumn("    {task.fields[status]:<10} {task.fields[stage]:<10}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("erasure", total=1.0, status=request["status"], stage="")
        while request["status"] not in TERMINAL:
            _check_deadline(deadline, "the erasure")
            time.sleep(1.0)
            request = client.erasure(request["id"])
            bar.update(task, completed=request["progress"], status=request["status"], stage=request["stage"] or "")
        bar.update(task, completed=1.0 if request["status"] == "succeeded" else request["progress"],
                   status=request["status"], stage="")
    return request


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"{what} did not finish before the demo's --timeout")


def _verify_certificate(certificate: dict[str, Any], public: dict[str, Any]) -> bool:
    from core import signing
    from core.certificates.service import verify_document

    key = signing.load_public_key(public.get("public_key_pem") or public.get("pem") or public["public_key"])
    return bool(verify_document(certificate, key).ok)


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(name, before, after) for the headline numbers the engine reported for the testbed."""
    targets = (metrics.get("testbed") or {}).get("targets") or []
    if not targets:
        return []
    t = targets[0]

    def base(name: str) -> float | None:
        after, rel = t.get(name), t.get(f"{name}_rel")
        return after / rel if isinstance(after, int | float) and isinstance(rel, int | float) and rel else None

    return [
        ("UA (forgotten, higher is better)", t.get("base_ua"), t.get("ua")),
        ("IRA (same kind kept)", base("ira"), t.get("ira")),
        ("CRA (other kind kept)", base("cra"), t.get("cra")),
        (f"attack success (soft-prompt budget {t.get('attack_budget') or '?'}, lower is better)", None,
         t.get("attack_success")),
    ]


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "—"


def _print_results(request: dict[str, Any], paths: dict[str, Path], folder: Path, cert_path: Path, cert_ok: bool,
                   audit: dict[str, Any], seconds: float) -> None:
    metrics = request.get("metrics") or {}
    table = Table(title=f"Erasure of {request['concepts'][0]['target']!r}: before → after")
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column("erased", justify="right")
    for name, before, after in _metric_rows(metrics):
        table.add_row(name, _fmt(before), _fmt(after))
    console.print(table)
    judge = metrics.get("judge") or {}
    proof = Table(title=f"Proof: judge {judge.get('judge', {}).get('name', '?')} on held-out prompts")
    for column in ("check", "value", "95 % interval", "images", "required"):
        proof.add_column(column, justify="left" if column == "check" else "right")
    checks = metrics.get("verification") or {}
    for name, check in checks.items():
        if check.get("evidence") == "image":
            interval = check.get("interval") or ("—", "—")
            proof.add_row(name, _fmt(check["value"]), f"{_fmt(interval[0])}–{_fmt(interval[1])}",
                          str(check.get("images", "—")), f">= {_fmt(check.get('min'))}")
    console.print(proof)
    grid = next((p for n, p in paths.items() if n.endswith("grid.png")), None)
    adapter = paths.get("adapter/pytorch_lora_weights.safetensors")
    kohya = paths.get("adapter/lora_kohya.safetensors")
    card = paths.get("README.md")
    console.print(f"    adapter      {adapter} (diffusers)")
    console.print(f"                 {kohya} (kohya: ComfyUI, AUTOMATIC1111)")
    console.print(f"    model card   {card}")
    console.print(f"    fused model  {folder / 'fused'}")
    console.print(f"    grid         {grid}")
    console.print(f"    certificate  {cert_path} · signature {'valid' if cert_ok else 'INVALID'}")
    console.print(f"    audit chain  {'ok' if audit.get('ok') else 'BROKEN'} ({audit.get('checked')} events)")
    console.print(f"    total {seconds:.0f} s")
