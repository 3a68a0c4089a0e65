"""Screen CycleGAN config variants for the translation quality bar (issue #19; docs/translation.md, "Quality bar").
Not the benchmark (that is bench_translation.py, which runs the i2i suite): a quicker, single-job check.

    PYTHONPATH=. python benchmarks/screen_cyclegan.py SEED [key=value ...]     # CycleGAN, quick config + overrides
    PYTHONPATH=. python benchmarks/screen_cyclegan.py --paired-diag            # capacity diagnostic (not a CycleGAN)

CycleGAN mode: `CycleGAN(CycleGANConfig(**overrides)).fit(train, seed=SEED)` on one thread, then per direction
the i2i job's definitions on all 1000 paired held-out images: FD of the pinned target classifier's features of the
translations against the target domain's 2000 training images, and content kept (the target classifier's argmax
equals the source label). Prints one JSON line with the overrides, the CPU seconds of `fit`
(`time.process_time`), wall seconds, FD and content kept (%) per direction.

--paired-diag: how far the quick generator architecture can get when told the answer: one generator per direction
trained with L1 on paired renderings of the *training* digits (the recipe draws both domains for every digit; the
suite never pairs them), 1000 steps of batch 8 at the quick lr, scored the same way. A ceiling for the
architecture and step budget, not a translation model: it uses pairs, which the issue forbids for the CycleGAN.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

TARGET = {"a2b": ("a", "b", "colour"), "b2a": ("b", "a", "grey")}


def parse_overrides(args: list) -> dict:
    from reference_models.cyclegan import CycleGANConfig

    fields = CycleGANConfig.__dataclass_fields__
    conv = {"int": int, "float": float, "str": str, "bool": lambda s: {"1": True, "true": True, "0": False,
                                                                      "false": False}[s.lower()]}
    out = {}
    for kv in args:
        k, sep, v = kv.partition("=")
        if not sep or k not in fields:
            sys.exit(f"screen_cyclegan: {kv!r} is not key=value with a CycleGANConfig field "
                     f"(fields: {', '.join(fields)})")
        try:
            out[k] = conv[str(fields[k].type)](v)
        except (KeyError, ValueError):
            sys.exit(f"screen_cyclegan: {k}={v!r} is not a valid {fields[k].type}")
    return out


def score(translate, test, train, out: dict) -> dict:
    from genbench.features import get_extractor
    from genbench.metrics.frechet import frechet_distance_features
    from genbench.metrics.translation import content_kept

    with torch.no_grad():
        for d, (src, tgt, name) in TARGET.items():
            ext = get_extractor(f"classifier:mnist-{name}", "cpu")
            fwd = translate(test.domain(src), d)
            real, fake = ext.extract(train.domain(tgt), 256), ext.extract(fwd, 256)
            out[f"fd_{d}"] = round(float(frechet_distance_features(real, fake)), 1)
            out[f"content_{d}"] = round(100 * content_kept(ext.predict_proba(fwd), test.labels(src)), 1)
    return out


def cyclegan(seed: int, overrides: dict) -> dict:
    from genbench.data.translation import GreyColourTranslation
    from reference_models.cyclegan import CycleGAN, CycleGANConfig

    ds = GreyColourTranslation()
    train, test = ds._load("train"), ds._load("test")
    m = CycleGAN(CycleGANConfig(**overrides), ds.info)
    t0, w0 = time.process_time(), time.time()
    m.fit(train, seed=seed)
    out = {"seed": seed, "overrides": overrides, "cpu_s": round(time.process_time() - t0, 1),
           "wall_s": round(time.time() - w0, 1)}
    return score(m.translate, test, train, out)


def paired_diag() -> dict:
    from genbench.data.translation import GreyColourTranslation, _f, build_domains
    from reference_models.cyclegan import CycleGANConfig, ResnetGenerator

    cfg = CycleGANConfig()
    d = build_domains()
    dom = {"a": _f(d["grey"]["train_x"]), "b": _f(d["colour"]["train_x"])}  # item i: the same training digit
    ds = GreyColourTranslation()
    train, test = ds._load("train"), ds._load("test")
    nets, out = {}, {"diag": "paired L1 (not a CycleGAN), quick generator, 1000 steps batch 8"}
    for direction, (src, tgt, _) in TARGET.items():
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1)
        net = ResnetGenerator(3, cfg.ch, cfg.n_res, cfg.n_down, cfg.skips, cfg.residual)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        t0 = time.process_time()
        for _ in range(1000):
            i = torch.randint(0, len(dom[src]), (8,), generator=g)
            loss = (net(dom[src][i]) - dom[tgt][i]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[f"cpu_s_{direction}"] = round(time.process_time() - t0, 1)
        nets[direction] = net.eval()
    return score(lambda x, dirn: torch.cat([nets[dirn](x[j:j + 250]) for j in range(0, len(x), 250)]).clamp(0, 1),
                 test, train, out)


def main(argv: list) -> None:
    torch.set_num_threads(1)
    if argv == ["--paired-diag"]:
        print(json.dumps(paired_diag()), flush=True)
        return
    if not argv or not argv[0].lstrip("-").isdigit():
        sys.exit("usage: screen_cyclegan.py SEED [key=value ...]  |  screen_cyclegan.py --paired-diag")
    print(json.dumps(cyclegan(int(argv[0]), parse_overrides(argv[1:]))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
