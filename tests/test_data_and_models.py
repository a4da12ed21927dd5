"""The CIFAR-10 python-format reader and writer, and the reference networks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from signattack.data import find_cifar10, read_cifar10, write_cifar10, write_synthetic_cifar10
from signattack.models import AllCNN, DigitsCNN


def _images(count, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, count)


def test_round_trip_through_the_standard_format(tmp_path):
    train, test = _images(23, 0), _images(7, 1)
    folder = write_cifar10(tmp_path, train, test)
    assert sorted(p.name for p in folder.iterdir()) == [
        "batches.meta",
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]
    for split, (images, labels) in (("train", train), ("test", test)):
        read_images, read_labels = read_cifar10(tmp_path, split)
        assert read_images.dtype == np.uint8
        assert read_images.shape == images.shape
        np.testing.assert_array_equal(read_images, images)
        np.testing.assert_array_equal(read_labels, labels)
    assert find_cifar10(folder) == folder == find_cifar10(tmp_path)


def test_the_layout_is_the_documented_one(tmp_path):
    """Row-major 32x32 planes, red then green then blue, in a pickled dict."""
    images, labels = _images(5, 2)
    write_cifar10(tmp_path, (images, labels), (images, labels))
    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    assert raw[b"data"].shape == (5, 3072)
    np.testing.assert_array_equal(raw[b"data"][0, :1024], images[0, 0].ravel())
    np.testing.assert_array_equal(raw[b"data"][0, 2048:], images[0, 2].ravel())
    assert raw[b"labels"] == labels.tolist()


def test_a_tampered_file_cannot_run_code(tmp_path):
    write_synthetic_cifar10(tmp_path, train_size=10, test_size=5)

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("wb") as handle:
        pickle.dump({b"data": Exploit(), b"labels": []}, handle)
    with pytest.raises(ValueError, match=r"refusing to load builtins\.print"):
        read_cifar10(tmp_path, "test")


def test_missing_and_malformed_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"signattack\.data\.fetch_cifar10\("):
        read_cifar10(tmp_path)
    folder = write_synthetic_cifar10(tmp_path, train_size=10, test_size=5)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="lacks CIFAR-10 files data_batch_3"):
        read_cifar10(tmp_path, "train")
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ValueError, match=r"data must have shape \(n, 3072\), got \(2, 100\)"):
        read_cifar10(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        read_cifar10(tmp_path, "validation")
    with pytest.raises(ValueError, match=r"uint8 \(n, 3, 32, 32\)"):
        write_cifar10(tmp_path, (np.zeros((2, 3, 32, 32)), [0, 1]), _images(2, 0))


def test_all_cnn_has_the_course_parameter_count_and_shape():
    model = AllCNN()
    assert sum(p.numel() for p in model.parameters()) == 1_667_166
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert "normalize.mean" in dict(model.named_buffers())


def test_models_normalize_pixels_inside():
    model = DigitsCNN().eval()
    with torch.no_grad():
        scaled = model.normalize(torch.tensor([0.0, 127.5, 255.0]).view(1, 3, 1, 1)[:, :1])
    assert scaled.flatten().tolist() == [-1.0]


def test_writing_never_replaces_batch_files_that_are_there(tmp_path):
    train, test = _images(10, 0), _images(5, 1)
    folder = write_cifar10(tmp_path, train, test)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(FileExistsError, match=r"already holds CIFAR-10 batch.*overwrite=True"):
        write_cifar10(tmp_path, _images(4, 2), _images(2, 3))
    with pytest.raises(FileExistsError, match="already holds CIFAR-10 batch files"):
        write_synthetic_cifar10(tmp_path, train_size=10, test_size=5)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    write_cifar10(tmp_path, _images(4, 2), _images(2, 3), overwrite=True)
    assert len(read_cifar10(tmp_path, "train")[1]) == 4


def test_a_synthetic_stand_in_is_marked_and_replaces_only_itself(tmp_path):
    folder = write_synthetic_cifar10(tmp_path, train_size=10, test_size=5)
    assert "Never report results" in (folder / "SYNTHETIC").read_text()
    write_synthetic_cifar10(tmp_path, train_size=20, test_size=5, seed=1)  # its own: replaced
    assert len(read_cifar10(tmp_path, "train")[1]) == 20
    write_cifar10(tmp_path, _images(4, 2), _images(2, 3), overwrite=True)  # real data now
    assert not (folder / "SYNTHETIC").exists()
    with pytest.raises(FileExistsError):
        write_synthetic_cifar10(tmp_path, train_size=10, test_size=5)


def test_normalize_wrapper_is_the_normalised_network() -> None:
    from signattack.models import Normalize

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    model = Normalize(net, mean, std)
    x = torch.rand(6, 3, 4, 4)
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(model(x), expected)
    assert [name for name, _ in model.named_parameters()] == ["model.1.weight", "model.1.bias"]
    # one number stands for every channel; arrays and tensors of constants are taken
    torch.testing.assert_close(Normalize(None, 0.5, 0.25)(x), (x - 0.5) / 0.25)
    same = Normalize(net, np.asarray(mean), torch.tensor(std))
    torch.testing.assert_close(same(x), expected)
    with pytest.raises(ValueError, match="3 channels, got an input of shape"):
        model(torch.rand(2, 4, 4, 3))
    # float64 models are normalised in float64
    exact = Normalize(None, (0.1,), (0.3,)).double()(
        torch.full((1, 1, 2, 2), 0.1, dtype=torch.float64)
    )
    assert bool((exact == 0).all())


@pytest.mark.parametrize(
    ("mean", "std", "error", "match"),
    [
        ((0.5, 0.5), (0.2,), ValueError, "one value per channel"),
        ((0.5,), (0.0,), ValueError, "std must be positive"),
        ((float("nan"),), (1.0,), ValueError, "mean must be finite"),
        ((), (), ValueError, "at least one"),
        (("0.5",), (1.0,), TypeError, "mean must be real numbers"),
        ((0.5,), (1e-45,), ValueError, "std must be positive"),
        ((0.5,), (True,), TypeError, "std must be real numbers"),
    ],
)
def test_normalize_refuses_bad_constants(
    mean: object, std: object, error: type[Exception], match: str
) -> None:
    from signattack.models import Normalize

    with pytest.raises(error, match=match):
        Normalize(None, mean, std)  # type: ignore[arg-type]


def test_reference_networks_keep_their_checkpoint_keys() -> None:
    from signattack.models import DigitsCNN

    keys = list(DigitsCNN().state_dict())
    assert keys[:2] == ["normalize.mean", "normalize.std"]


def test_digits_data_shows_counts_not_pixels() -> None:
    from signattack.digits import load_digits

    shown = repr(load_digits())
    assert "\n" not in shown
    assert "tensor" not in shown
    assert "train=1348" in shown
    assert "test=449" in shown
