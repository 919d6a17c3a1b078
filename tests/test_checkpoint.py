import io
import os
import pickle
import re
import stat
import struct
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch

from igraphflow import ConditionalGraphFlow
from igraphflow.checkpoint import atomic_file, load_checked, save_atomic
from igraphflow.flow import CHECKPOINT_KIND


@pytest.fixture
def umask():
    def set_umask(mask):
        previous = os.umask(mask)
        restore.append(previous)

    restore = []
    yield set_umask
    for previous in restore:
        os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_the_permissions_of_a_plain_open(tmp_path, umask, mask):
    # mkstemp makes its files private (0600), and the rename kept that whatever the umask.
    umask(mask)
    save_atomic({"step": 1}, tmp_path / "state.pt", kind="demo")
    with open(tmp_path / "plain", "wb"):
        pass
    assert stat.S_IMODE((tmp_path / "state.pt").stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "state.pt").stat().st_mode) == 0o666 & ~mask


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    save_atomic({"step": 1}, tmp_path / "state.pt", kind="demo")
    os.chmod(tmp_path / "state.pt", 0o640)
    save_atomic({"step": 2}, tmp_path / "state.pt", kind="demo")
    assert stat.S_IMODE((tmp_path / "state.pt").stat().st_mode) == 0o640


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    save_atomic({"step": 1}, tmp_path / "state.pt", kind="demo")
    with pytest.raises(error), atomic_file(tmp_path / "state.pt") as file:
        file.write(b"half a checkpoint")
        raise error
    assert load_checked(tmp_path / "state.pt", kind="demo")["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


@pytest.mark.skipif(os.name != "posix", reason="the sweep probes processes on POSIX systems only")
def test_the_next_write_removes_only_the_temporaries_of_killed_writers(tmp_path):
    # A process killed while writing cannot remove its temporary: a full-size file stayed for good.
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(finished.stdout), os.getpid()
    stale = [f".state.pt.{dead}.{'0' * 8}.tmp", f".run[1].pt.{dead}.{'a' * 8}.tmp"]
    kept = [
        f".state.pt.{alive}.{'1' * 8}.tmp",  # a writer still at work (another thread)
        f".state.pt.best.{dead}.{'2' * 8}.tmp",  # another file's
        f".run1.pt.{dead}.{'3' * 8}.tmp",  # another file's: a bracket is no pattern
        ".state.pt.abc.tmp",  # not the shape of ours
        f".state.pt.{dead}.{'4' * 10}.tmp",  # nor this: ours end in 8 hex digits
        f".state.pt.{dead}.{'5' * 8}.tmp.bak",  # a copy someone kept of one
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"partial")
    save_atomic({"step": 2}, tmp_path / "state.pt", kind="demo")
    save_atomic({"step": 2}, tmp_path / "run[1].pt", kind="demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["state.pt", "run[1].pt"])


def _refuse_signals(pid, signal):
    raise PermissionError(1, "Operation not permitted")  # what os.kill raises for another user's process


@pytest.mark.skipif(os.name != "posix", reason="the sweep probes processes on POSIX systems only")
@pytest.mark.parametrize("pid, kill", [(4242, _refuse_signals), (2**70, os.kill)], ids=["another user's", "no such pid"])
def test_the_temporaries_of_writers_that_cannot_be_probed_are_kept(tmp_path, monkeypatch, pid, kill):
    # Such a writer may still be at work: removing its temporary would make its rename fail.
    monkeypatch.setattr(os, "kill", kill)
    kept = f".state.pt.{pid}.{'0' * 8}.tmp"
    (tmp_path / kept).write_bytes(b"partial")
    save_atomic({"step": 1}, tmp_path / "state.pt", kind="demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept, "state.pt"]


def test_the_file_is_on_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    # Without the fsync a crash just after the rename could leave an empty file in place of both.
    synced, fsync = [], os.fsync

    def recording_fsync(fd):
        synced.append((os.fstat(fd).st_size, (tmp_path / "state.pt").exists()))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    save_atomic({"step": 1}, tmp_path / "state.pt", kind="demo")
    assert synced == [((tmp_path / "state.pt").stat().st_size, False)]


def test_names_near_the_system_limit_are_written(tmp_path):
    # The temporary's suffix made a 233-character name too long for the system.
    path = tmp_path / ("m" * 250 + ".pt")
    save_atomic({"step": 1}, path, kind="demo")
    assert load_checked(path, kind="demo")["step"] == 1 and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_write_inside_another_leaves_both_whole(tmp_path):
    # The sweep removed the outer writer's temporary, which then failed.
    with atomic_file(tmp_path / "state.pt") as file:
        save_atomic({"step": 1}, tmp_path / "state.pt", kind="demo")
        torch.save({"kind": "demo", "step": 2}, file)
    assert load_checked(tmp_path / "state.pt", kind="demo")["step"] == 2


class _Unsafe:
    r"""Any object outside plain tensors and containers: unpickling it would run its code."""


def test_a_checkpoint_of_another_kind_is_refused(tmp_path):
    save_atomic({"step": 1}, tmp_path / "state.pt", kind="demo")
    with pytest.raises(ValueError, match=r"state\.pt holds a checkpoint of 'demo', not of 'other'"):
        load_checked(tmp_path / "state.pt", kind="other")
    torch.save({"step": 1}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="holds a checkpoint of 'an unknown kind', not of 'demo'"):
        load_checked(tmp_path / "plain.pt", kind="demo")


def test_a_checkpoint_holding_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"kind": "igraphflow.test", "payload": _Unsafe()}, path)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checked(path, "igraphflow.test")


def test_a_file_torch_cannot_read_is_refused_in_one_line_without_warnings(tmp_path):
    # A pickle leaked torch's warning of its protocol; a text file gave the reason "101".
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"step": 1}, protocol=4))
    (tmp_path / "notes.txt").write_text("hello world, not a checkpoint")
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ValueError, match="plain.pkl is not a readable checkpoint"):
        warnings.simplefilter("always")
        load_checked(tmp_path / "plain.pkl", "demo")
    assert not caught
    with pytest.raises(ValueError, match="notes.txt is not a readable checkpoint .*: unrecognised file format$"):
        load_checked(tmp_path / "notes.txt", "demo")


# A weight of 20 MiB, damaged past the first 16 MiB that one read of the entry takes.
@pytest.mark.parametrize("length, offset", [(1000, 2000), (5 * 2**20, 18 * 2**20)], ids=["small", "large"])
def test_a_flipped_byte_in_a_weight_is_refused(tmp_path, length, offset):
    # torch.load does not check the archive's checksums: the model loaded with another weight.
    save_atomic({"weight": torch.arange(float(length))}, tmp_path / "state.pt", kind="demo")
    data = bytearray((tmp_path / "state.pt").read_bytes())
    data[data.find(torch.arange(1000.0).numpy().tobytes()) + offset] ^= 0x10
    (tmp_path / "state.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"state.pt is not a readable checkpoint .*: \S+ fails its checksum$"):
        load_checked(tmp_path / "state.pt", "demo")

    # Damage to the archive's directory is a ValueError too (it was zipfile's BadZipFile).
    data = bytearray(data)
    data[data.find(torch.arange(1000.0).numpy().tobytes()) + offset] ^= 0x10  # the weight as it was
    data[data.rfind(b"PK\x06\x07") + 16] = 2  # "spans several disks"
    (tmp_path / "state.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="state.pt is not a readable checkpoint"):
        load_checked(tmp_path / "state.pt", "demo")


# Where a zip archive's entry records its compression method and its sizes: offset and layout
# in the directory record, and in the local header (which has no say on the sizes when, as in
# the archives torch writes, a data descriptor follows the data).
_CENTRAL_FIELDS = {"method": (10, "<H"), "sizes": (20, "<II")}
_LOCAL_FIELDS = {"method": (8, "<H")}


def _with_damaged_entry(data, name, field, values):
    r"""The zip archive ``data`` with ``field`` of entry ``name`` set to ``values`` in both of its headers."""
    data = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        if field in _LOCAL_FIELDS:
            offset, layout = _LOCAL_FIELDS[field]
            struct.pack_into(layout, data, archive.getinfo(name).header_offset + offset, *values)
    offset, layout = _CENTRAL_FIELDS[field]
    record = data.find(b"PK\x01\x02")
    while record != -1:
        length = struct.unpack_from("<H", data, record + 28)[0]
        if data[record + 46 : record + 46 + length] == name.encode():
            struct.pack_into(layout, data, record + offset, *values)
        record = data.find(b"PK\x01\x02", record + 4)
    return bytes(data)


@pytest.mark.parametrize(
    "field, values, reason",
    [
        # One flipped bit of the stored method (0) reads as deflate (8: zlib fails) or as shrink (1: unsupported).
        ("method", (8,), "Error -3 while decompressing"),
        ("method", (1,), "That compression method is not supported"),
        ("sizes", (10**6, 10**6), ""),  # the entry runs past the end of the file
    ],
)
def test_an_entry_with_a_damaged_header_is_refused(tmp_path, field, values, reason):
    save_atomic({"weight": torch.arange(10.0)}, tmp_path / "state.pt", kind="demo")
    with zipfile.ZipFile(tmp_path / "state.pt") as archive:
        weight = next(name for name in archive.namelist() if name.endswith("/data/0"))
    (tmp_path / "state.pt").write_bytes(_with_damaged_entry((tmp_path / "state.pt").read_bytes(), weight, field, values))
    with pytest.raises(ValueError, match=f"state.pt is not a readable checkpoint .*: {reason}"):
        load_checked(tmp_path / "state.pt", "demo")


def test_tensors_are_loaded_where_map_location_says(tmp_path):
    save_atomic({"weight": torch.arange(10.0)}, tmp_path / "state.pt", kind="demo")
    assert load_checked(tmp_path / "state.pt", "demo", map_location="meta")["weight"].device.type == "meta"


def test_an_archive_written_without_checksums_loads(tmp_path):
    # torch.serialization.set_crc32_options(False) writes every CRC as 0: no damage to report.
    torch.serialization.set_crc32_options(False)
    try:
        save_atomic({"weight": torch.arange(10.0)}, tmp_path / "state.pt", kind="demo")
    finally:
        torch.serialization.set_crc32_options(True)
    with zipfile.ZipFile(tmp_path / "state.pt") as archive:
        assert all(entry.CRC == 0 for entry in archive.infolist())
    assert torch.equal(load_checked(tmp_path / "state.pt", "demo")["weight"], torch.arange(10.0))


EDGES = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])


def test_settings_given_as_numpy_strings_save_and_load(tmp_path):
    # They were kept as np.str_, which the weights-only loading refuses: saved, never loaded again.
    model = ConditionalGraphFlow(EDGES, 3, 2, 2, conv=np.str_("cheb"), classifier=np.str_("linear"),
                                 divergence=np.str_("exact"), num_blocks=np.str_("auto"), batch_size=np.str_("auto"),
                                 initial_separation=np.str_("auto"), sample_temperature=np.str_("auto"))
    assert all(type(v) is str for v in model.config.values() if isinstance(v, str))
    model.save(tmp_path / "model.pt")
    assert ConditionalGraphFlow.load(tmp_path / "model.pt").config == model.config


def test_a_partial_state_leaves_the_rest_and_a_state_of_another_dtype_takes_the_models(tmp_path):
    g = torch.Generator().manual_seed(0)
    Y = torch.randint(0, 2, (64, 3), generator=g)
    X = torch.randn(64, 3, 2, generator=g) + 2.0 * Y.unsqueeze(-1)
    model = ConditionalGraphFlow(EDGES, 3, 2, 2, num_blocks=1, max_epochs=2, sample_temperature=0.7, seed=0)
    model.fit(X, Y, progress=False).calibrate(X[:16], Y[:16])
    expected = model.log_prob(X, Y)
    # The standardisation, temperature, noise and calibration went back to their neutral values.
    head = {k: v for k, v in model.state_dict().items() if k.startswith("head.")}
    result = model.load_state_dict(head, strict=False)
    assert torch.equal(model.log_prob(X, Y), expected) and model.is_calibrated and model.latent.temperature == 0.7
    assert "standardizer.scale" in result.missing_keys and not any(k.startswith("head.") for k in result.missing_keys)
    # A whole state of a model without fitted noise: no noise, as with strict=True.
    bare = ConditionalGraphFlow(EDGES, 3, 2, 2, num_blocks=1, max_epochs=2, fit_noise=False, seed=0).fit(X, Y, progress=False)
    result = model.load_state_dict(bare.state_dict(), strict=False)
    assert not result.missing_keys and not model.latent.has_noise_covariance
    assert torch.equal(model.log_prob(X, Y), bare.log_prob(X, Y))
    model = ConditionalGraphFlow(EDGES, 3, 2, 2, num_blocks=1, max_epochs=2, sample_temperature=0.7, seed=0)
    model.fit(X, Y, progress=False)
    # The noise buffers took the saved dtype: float32 inside a float64 model failed inside torch.
    wide = ConditionalGraphFlow(EDGES, 3, 2, 2, num_blocks=1, seed=0).double()
    wide.load_state_dict(model.state_dict())
    assert wide.latent.scale_tril.dtype == torch.float64
    torch.testing.assert_close(wide.log_prob(X, Y), expected.double(), rtol=1e-5, atol=1e-4)
    assert wide.sample(Y[:4], seed=0).dtype == torch.float64
    # A scale that no fit writes is refused.
    state = model.state_dict()
    state["standardizer.scale"] = -state["standardizer.scale"]
    with pytest.raises(ValueError, match="scale must be positive"):
        model.load_state_dict(state)


def test_tensors_that_do_not_fit_the_model_are_reported_in_one_line(tmp_path):
    # torch's message listed every mismatched tensor on a line of its own.
    ConditionalGraphFlow(EDGES, 3, 2, 2, num_blocks=1).save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload["config"]["num_classes"] = 3
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(ValueError) as error:
        ConditionalGraphFlow.load(tmp_path / "model.pt")
    message = str(error.value)
    assert "\n" not in message
    assert re.search(r"loading state_dict for ConditionalGraphFlow: size mismatch for classes_seen: .* \(and 4 more\)$", message)


def test_a_fit_resumed_from_another_file_says_what_differs(tmp_path):
    X, Y = torch.randn(16, 3, 2), torch.randint(2, (16, 3))
    model = ConditionalGraphFlow(EDGES, 3, 2, 2, num_blocks=1)
    model.save(tmp_path / "fit.pt")  # said "KeyError: 'fingerprint'"
    with pytest.raises(ValueError, match="fit.pt holds a model written by save, not the checkpoint of a fit"):
        model.fit(X, Y, progress=False, checkpoint_dir=tmp_path)
    payload = torch.load(tmp_path / "fit.pt", weights_only=True)
    payload["config"]["retired"] = 1  # a setting this version lacks: named, not "()"
    save_atomic({**payload, "finished": 0}, tmp_path / "fit.pt", kind=CHECKPOINT_KIND)
    with pytest.raises(ValueError, match=r"holds a fit with other settings \(retired\)"):
        model.fit(X, Y, progress=False, checkpoint_dir=tmp_path)


def _set_the_encrypted_flag(data: bytearray):
    data[data.find(b"PK\x01\x02") + 8] |= 1  # general-purpose flag bit 0 of the first central entry


def _claim_lzma_compression(data: bytearray):
    at = data.find(b"PK\x01\x02") + 10  # compression method of the first central entry
    data[at : at + 2] = (14).to_bytes(2, "little")


@pytest.mark.parametrize("damage", [_set_the_encrypted_flag, _claim_lzma_compression])
def test_a_damaged_archive_directory_is_refused_as_unreadable(tmp_path, damage):
    # One flipped bit there made zipfile raise RuntimeError or LZMAError instead of the documented ValueError.
    path = tmp_path / "c.pt"
    save_atomic({"w": torch.arange(10.0)}, path, kind="demo")
    data = bytearray(path.read_bytes())
    damage(data)
    path.write_bytes(data)
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        load_checked(path, "demo")


def test_the_kind_given_tags_the_file_whatever_the_payload_holds(tmp_path):
    save_atomic({"kind": "other", "step": 1}, tmp_path / "c.pt", kind="demo")
    assert load_checked(tmp_path / "c.pt", "demo")["step"] == 1
