"""Size and load time of explorer pages: 200 (the fixed cost), 2,000 and 20,000 points of random
unit vectors, and a page shaped like the ``cpu`` run's (its world's thumbnails, five models, five
α, 300 points per group).

Each page is opened in headless Chromium over the DevTools protocol (``--remote-debugging-pipe``,
no network, no extra package): the page reports the time from navigation start to its first
rendered frame (``first_render_ms``), then its ``#selftest`` drives every control and reports how
long each full update of the page took (``update_ms``: colour by score, threshold, box and lasso
selection, pairs, paths, search, model / view / α). Budget of the ``cpu``-shaped page: at most
8 MB and 3 s to first render.

    python benchmarks/bench_explorer.py --out /tmp/bench_explorer            # all three pages
    python benchmarks/bench_explorer.py --out /tmp/b --points 2000 --no-cpu  # one random page

Prints one JSON line per page and writes ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import cmakit
from cmakit.common.io import write_json

BUDGET = {"size_mb": 8.0, "first_render_s": 3.0}


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_page(n_points: int, out: Path, *, dim: int = 512, seed: int = 0) -> Path:
    """A page of ``n_points`` random unit vectors: 5% negative labels, 100 prompts, the rest
    images (half ID, a quarter in each of two OoD sets); one model, α in {0, 0.5, 1}."""
    rng = np.random.default_rng(seed)
    n_neg, n_cls = n_points // 20, 100
    n_img = n_points - n_neg - n_cls
    n_id, n_ood = n_img // 2, n_img // 4
    return cmakit.explore(
        _unit(rng, n_id, dim), _unit(rng, n_cls, dim), neg_texts=_unit(rng, n_neg, dim),
        ood={"near": _unit(rng, n_ood, dim), "far": _unit(rng, n_img - n_id - n_ood, dim)},
        out=out, max_points=n_points,
    )  # fmt: skip


def cpu_like_page(out: Path, *, dim: int = 64, seed: int = 0) -> Path:
    """A page of the ``cpu`` run's shape: its world's test images as thumbnails (300 per group),
    its classes, ~55 negative labels and CSP labels, five models (zero-shot, FLYP, CMA and two
    more λ), five α; the embeddings are random unit vectors (no training needed)."""
    from cmakit.engine.bundle import EmbeddingBundle
    from cmakit.pipeline import steps
    from cmakit.pipeline.config import resolve
    from cmakit.pipeline.explore import write_source
    from cmakit.pipeline.explore_sources import ExploreSource
    from cmakit.pipeline.run_data import load_world

    cfg = resolve({"profile": "cpu", "run_dir": str(out.parent / "cpu-run")})
    world = load_world(cfg, cfg.seeds[0])  # built once (minutes), then read from the cache
    rng = np.random.default_rng(seed)
    test = world.labels("test").numpy()
    sets = [k for k in world.raw_images if k in ("near_shapes", "far_objects", "far_textures")]
    n_cls, n_neg = len(world.id_classnames), 55
    bundles = {
        name: EmbeddingBundle(
            id_images=_unit(rng, len(test), dim),
            id_labels=test,
            id_texts=_unit(rng, n_cls, dim),
            neg_texts=_unit(rng, n_neg, dim),
            csp_texts=_unit(rng, 2 * n_neg, dim),
            logit_scale=50.0,
            ood={k: _unit(rng, len(world.raw_images[k]), dim) for k in sets},
        )  # fmt: skip
        for name in (
            "zero-shot",
            "FLYP",
            "CMA (λ = 0.1)",
            "λ = 0.01 (ablation)",
            "λ = 1 (ablation)",
        )
    }
    pixels = {k: world.raw_images[k].permute(0, 2, 3, 1).numpy() for k in sets}
    labels = {"id_images": [world.id_classnames[k] for k in test], "id_texts": list(world.id_classnames),
              "neg_texts": [f"word{i}" for i in range(n_neg)],
              **{f"ood/{k}": [k] * len(v) for k, v in pixels.items()}}  # fmt: skip
    thumbnails = {"id_images": world.raw_images["test"].permute(0, 2, 3, 1).numpy(),
                  **{f"ood/{k}": v for k, v in pixels.items()}}  # fmt: skip
    source = ExploreSource(bundles=bundles, labels=labels, class_names=list(world.id_classnames),
                           neg_names=labels["neg_texts"], thumbnails=thumbnails,
                           settings=steps.score_settings(cfg), title="cpu-shaped explorer")  # fmt: skip
    return write_source(source, out, alphas=[0.0, 0.25, 0.5, 0.75, 1.0], max_points=300)


# ---------------------------------------------------------------- Chromium over DevTools
class Chromium:
    """Headless Chromium driven over ``--remote-debugging-pipe`` (fds 3 and 4, NUL-framed JSON)."""

    def __init__(self, browser: str):
        self.tmp = tempfile.mkdtemp(prefix="bench-explorer-")
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()
        os.set_inheritable(to_chrome, True)
        os.set_inheritable(from_chrome, True)

        def fds() -> None:  # chromium reads commands on fd 3, writes replies on fd 4
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-pipe",
                 "--window-size=1400,1000", f"--user-data-dir={self.tmp}", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen([browser, *flags], preexec_fn=fds, pass_fds=(3, 4),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(to_chrome)
        os.close(from_chrome)
        self._next, self._buf, self.session = 0, b"", None
        target = next(
            t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page"
        )
        self.session = self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )["sessionId"]

    def call(self, method: str, **params):
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                self._buf += os.read(self._read, 1 << 20)
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)[
            "result"
        ].get("value")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _wait(chrome: Chromium, expression: str, timeout: float = 120.0):
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        value = chrome.evaluate(expression)
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(expression)


REPORT = "(document.getElementById('explorer-summary') || {}).textContent || ''"


def measure(browser: str, page: Path) -> dict:
    """First render and per-control update times of ``page`` in a fresh headless Chromium."""
    chrome = Chromium(browser)
    try:
        chrome.call("Page.navigate", url=page.resolve().as_uri() + "#selftest")
        start = time.perf_counter()
        _wait(chrome, f"JSON.parse({REPORT} || '{{}}').first_render_ms")
        wall = time.perf_counter() - start
        report = json.loads(_wait(chrome, f"JSON.parse({REPORT} || '{{}}').selftest && {REPORT}"))
        errors = chrome.evaluate("document.documentElement.getAttribute('data-explorer-errors')")
    finally:
        chrome.close()
    steps = {
        k: v["update_ms"]
        for k, v in report["selftest"].items()
        if isinstance(v, dict) and "update_ms" in v
    }
    return {"first_render_s": report["first_render_ms"] / 1000, "navigate_to_render_s": wall,
            "update_ms": steps, "errors": errors, "points": sum(report["groups"].values())}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for the pages and results.json")
    p.add_argument(
        "--points",
        type=int,
        nargs="*",
        default=[200, 2000, 20000],
        help="random pages; 200 points is the fixed cost of Bokeh and the page's script",
    )
    p.add_argument("--no-cpu", action="store_true", help="skip the cpu-shaped page")
    p.add_argument("--browser", default=shutil.which("chromium") or "chromium")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pages = {
        f"random-{n}": (lambda n=n: random_page(n, out / f"random-{n}.html")) for n in args.points
    }
    if not args.no_cpu:
        pages["cpu-shaped"] = lambda: cpu_like_page(out / "cpu-shaped.html")
    results = {}
    for name, build in pages.items():
        start = time.perf_counter()
        page = build()
        row = {"page": name, "build_s": round(time.perf_counter() - start, 1),
               "size_mb": round(page.stat().st_size / 1e6, 2), **measure(args.browser, page)}  # fmt: skip
        if name == "cpu-shaped":
            row["within_budget"] = (row["size_mb"] <= BUDGET["size_mb"]
                                    and row["first_render_s"] <= BUDGET["first_render_s"])  # fmt: skip
        results[name] = row
        print(json.dumps(row), flush=True)
    write_json(out / "results.json", {"budget": BUDGET, "load_average": os.getloadavg(), **results})


if __name__ == "__main__":
    main()
