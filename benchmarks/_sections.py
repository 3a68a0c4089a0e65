"""The section runner the device scripts share (gpu_check.py, bench_gpu.py): each section runs even if an earlier
one failed (traceback printed), its result and time go into a results dict, the dict is rewritten as JSON after
every section (a run stopped by a time limit keeps what it had), and one summary line is printed."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Callable, Optional


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def section_decorator(results: dict, json_path: Callable[[], Optional[Path]]):
    """`@section(name)` for functions returning a dict of figures; `json_path()` is where `results` is written
    after each section (None: not written)."""

    def section(name):
        def wrap(fn):
            def run(*a, **kw):
                print(f"\n=== {name}", flush=True)
                t0 = time.perf_counter()
                try:
                    results[name] = {"ok": True, **(fn(*a, **kw) or {})}
                except Exception as e:  # keep going: the other sections still say something
                    traceback.print_exc()
                    results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                results[name]["seconds"] = round(time.perf_counter() - t0, 1)
                path = json_path()
                if path is not None:
                    write_json(path, results)
                print(f"--- {name}: {'ok' if results[name]['ok'] else 'FAILED'} in {results[name]['seconds']} s",
                      json.dumps({k: v for k, v in results[name].items() if k not in ("ok", "seconds")}, default=str),
                      flush=True)
            return run
        return wrap

    return section
