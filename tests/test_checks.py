from pathlib import Path

import pytest
import torch

from igraphflow._checks import as_device, as_output_dir, as_output_file


@pytest.fixture
def one_gpu(monkeypatch):
    r"""Makes torch report one CUDA GPU, so that the device choice is checked on any machine."""
    monkeypatch.setattr(torch.cuda, "is_available", _yes)
    monkeypatch.setattr(torch.cuda, "device_count", _one)


def _yes():
    return True


def _one():
    return 1


def test_no_device_named_gives_the_gpu_where_there_is_one(one_gpu):
    assert as_device(None) == torch.device("cuda")


def test_a_gpu_index_beyond_the_last_gpu_is_refused(one_gpu):
    # Indices count from 0: with one GPU, cuda:1 is one past the last.
    with pytest.raises(ValueError, match=r"device 'cuda:1' does not exist: this machine has 1 CUDA GPU\(s\)"):
        as_device("cuda:1")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_existing_folder_that_cannot_be_written_into_is_refused():
    # /proc exists and is a folder, so only trying to write there tells (even as root).
    with pytest.raises(ValueError, match="out /proc cannot be written"):
        as_output_dir("/proc", "out")


def test_an_output_files_folder_is_made_and_a_file_in_its_way_is_named(tmp_path):
    assert as_output_file(tmp_path / "new" / "sub" / "x.npz", "out") == tmp_path / "new" / "sub" / "x.npz"
    assert (tmp_path / "new" / "sub").is_dir()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="a_file is a file, not a directory"):
        as_output_file(tmp_path / "a_file" / "x.npz", "out")
