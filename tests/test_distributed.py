"""Two gloo processes on the CPU train exactly like one process on the same global batch."""

import socket

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from srem_core.distributed import DistributedContext
from srem_core.training import Trainer

from test_training import make_data, small_config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, run_dir: str, method: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        context = DistributedContext(rank=rank, world_size=world_size)
        Trainer(small_config(method, epochs=3), make_data(), run_dir, encoder_identity="synthetic", progress=False,
                context=context, device=torch.device("cpu")).fit()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", ["srem"])
def test_two_processes_match_one(tmp_path, method):
    torch.set_num_threads(1)
    Trainer(small_config(method, epochs=3), make_data(), tmp_path / "single", encoder_identity="synthetic", progress=False).fit()
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "double"), method), nprocs=2, join=True)

    single = pd.read_parquet(tmp_path / "single" / "history.parquet")
    double = pd.read_parquet(tmp_path / "double" / "history.parquet")
    assert len(single) == len(double)
    for column in ("energy", "swapped_entropy", "per_pair_loss", "clean_prob"):
        assert np.abs(single[column].to_numpy() - double[column].to_numpy()).max() <= 1e-5, column
    assert (single["selected_clean"] == double["selected_clean"]).all()


def test_local_slices_cover_batch_in_order():
    rows = np.arange(11)
    parts = [DistributedContext(rank=rank, world_size=3).local_slice(rows) for rank in range(3)]
    assert np.concatenate(parts).tolist() == rows.tolist()
    assert DistributedContext(rank=0, world_size=3).slice_sizes(11) == [4, 4, 3]


def test_process_group_timeout_from_environment(monkeypatch):
    import datetime

    from srem_core.distributed import process_group_timeout

    monkeypatch.delenv("SREM_DIST_TIMEOUT_MINUTES", raising=False)
    assert process_group_timeout() == datetime.timedelta(minutes=30)
    monkeypatch.setenv("SREM_DIST_TIMEOUT_MINUTES", "90")
    assert process_group_timeout() == datetime.timedelta(minutes=90)
    for bad in ("0", "-5", "soon", "inf", "nan", "1e12"):
        monkeypatch.setenv("SREM_DIST_TIMEOUT_MINUTES", bad)
        with pytest.raises(ValueError, match=rf"SREM_DIST_TIMEOUT_MINUTES='{bad}' is not a number of minutes in \(0, 10080\]"):
            process_group_timeout()
