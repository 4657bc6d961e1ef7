"""The shared training loop probkit.neural.train_module: schedule, early stopping, determinism, DDP.

Run as a script (``python tests/neural/test_estimators_training.py OUT``) it is one rank
of the 2-process DDP test below.
"""

import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from probkit.neural import TrainingHistory, train_module
from probkit.neural.estimators import TensorData, TrainingOptions, evaluate_loss, run_training, seeded

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def regression_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)
    return X, y


def mse(model, batch):
    xb, yb = batch
    return ((model(xb).squeeze(-1) - yb) ** 2).mean(), len(yb)


def make_net(seed=0):
    with seeded(seed):
        return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def test_fits_and_is_reproducible_on_cpu():
    X, y = regression_data()
    nets = [make_net() for _ in range(3)]
    h1 = train_module(nets[0], mse, (X, y), max_epochs=15, lr=0.03, random_state=0)
    h2 = train_module(nets[1], mse, (X, y), max_epochs=15, lr=0.03, random_state=0)
    train_module(nets[2], mse, (X, y), max_epochs=15, lr=0.03, random_state=1)
    assert h1.train_loss[-1] < 0.2 * h1.train_loss[0]
    assert h1.train_loss == h2.train_loss
    for a, b, c in zip(*(n.parameters() for n in nets)):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, c) for a, c in zip(nets[0].parameters(), nets[2].parameters()))
    assert isinstance(h1, TrainingHistory) and h1.n_steps == 15 * 2 and h1.stop_reason == "max_epochs"
    assert not nets[0].training                      # returned in eval mode


def test_global_rng_is_untouched_and_dropout_is_seeded():
    X, y = regression_data()

    def run():
        with seeded(0):
            net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1))
        train_module(net, mse, (X, y), max_epochs=3, random_state=5)
        return net

    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    a = run()
    assert torch.equal(torch.rand(3), expected)
    b = run()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_warmup_then_cosine_schedule():
    X, y = regression_data(40)
    lrs = []
    train_module(make_net(), mse, (X, y), batch_size=10, max_epochs=5, lr=0.1, warmup=4, schedule="cosine",
                 min_lr_ratio=0.1, random_state=0, callback=lambda e, h, m: lrs.append(h.lr[-1]) and False)
    # 4 steps per epoch, 20 steps: warm-up over the first 4 (lr 0.1 after step 4), cosine over the next 16
    total, warm = 20, 4

    def expected(step):  # learning rate for the next step after `step` steps
        p = (step - warm) / (total - warm)
        return 0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    np.testing.assert_allclose(lrs, [expected(4 * (e + 1)) for e in range(5)], rtol=1e-9)
    lrs_lin = []
    train_module(make_net(), mse, (X, y), batch_size=10, max_epochs=2, lr=0.1, schedule="linear", random_state=0,
                 callback=lambda e, h, m: lrs_lin.append(h.lr[-1]) and False)
    np.testing.assert_allclose(lrs_lin, [0.05, 0.0], atol=1e-12)


def test_max_steps_and_callback_stop():
    X, y = regression_data()
    h = train_module(make_net(), mse, (X, y), batch_size=8, max_epochs=100, max_steps=11, random_state=0)
    assert h.n_steps == 11 and h.n_epochs == 2 and h.stop_reason == "max_steps"
    h = train_module(make_net(), mse, (X, y), max_epochs=100, random_state=0, callback=lambda e, hist, m: e == 2)
    assert h.n_epochs == 3 and h.stop_reason == "callback"


def test_early_stopping_restores_the_best_validation_state():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 3, generator=g)
    y = torch.randn(40, generator=g)                 # noise: a wide net overfits, validation loss rises
    with seeded(0):
        net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    states = []
    h = train_module(net, mse, (X, y), validation_fraction=0.3, max_epochs=200, lr=0.05, patience=5,
                     schedule="constant", random_state=0,
                     callback=lambda e, hist, m: states.append({k: v.clone() for k, v in m.state_dict().items()}))
    assert h.stop_reason == "early_stopping"
    assert h.best_epoch == int(np.argmin(h.val_loss)) and h.best_val_loss == min(h.val_loss)
    assert h.n_epochs - 1 - h.best_epoch == 5
    for k, v in net.state_dict().items():
        assert torch.equal(v, states[h.best_epoch][k])
    assert len(h.val_loss) == h.n_epochs


def test_explicit_validation_data_and_weighted_losses():
    X, y = regression_data(30)
    Xv, yv = regression_data(10, seed=1)
    net = make_net()
    h = train_module(net, mse, (X, y), val_data=(Xv, yv), max_epochs=3, batch_size=7, random_state=0,
                     early_stopping=False)
    total, weight = evaluate_loss(net, mse, (Xv, yv), batch_size=3)
    assert weight == 10
    with torch.no_grad():
        direct = float(((net(Xv).squeeze(-1) - yv) ** 2).mean())
    assert math.isclose(total / weight, direct, rel_tol=1e-5)
    assert h.best_epoch == int(np.argmin(h.val_loss))


def test_custom_data_objects_are_batched_by_index():
    class Squares:
        def __len__(self):
            return 20

        def batch(self, index):
            x = index.float().unsqueeze(-1) / 20
            return {"x": x, "y": x.squeeze(-1) ** 2}

    seen = []

    def loss(model, batch):
        seen.append(len(batch["y"]))
        return ((model(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()

    h = train_module(torch.nn.Linear(1, 1), loss, Squares(), batch_size=6, max_epochs=2, random_state=0)
    assert seen == [6, 6, 6, 2] * 2 and h.n_steps == 8


def test_non_finite_loss_stops_with_a_clear_error():
    X, y = regression_data()
    with pytest.raises(FloatingPointError, match="lower lr"):
        train_module(make_net(), lambda m, b: m(b[0]).sum() * float("nan"), (X, y), max_epochs=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(max_epochs=1.5), "max_epochs must be a positive integer"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(lr=-1.0), "lr must be a positive number"),
    (dict(schedule="step"), "schedule must be"),
    (dict(warmup=1.5), "warmup must be"),
    (dict(clip_grad_norm=0.0), "clip_grad_norm"),
    (dict(mixed_precision="int8"), "mixed_precision"),
    (dict(max_time=-1), "max_time"),
    (dict(random_state="x"), "random_state"),
])
def test_bad_arguments(kwargs, match):
    X, y = regression_data(8)
    with pytest.raises(ValueError, match=match):
        train_module(make_net(), mse, (X, y), **kwargs)


def test_bad_data_and_loss():
    with pytest.raises(TypeError, match="batch\\(index\\)"):
        train_module(make_net(), mse, [1, 2, 3])
    with pytest.raises(ValueError, match="share their first dimension"):
        train_module(make_net(), mse, (torch.zeros(3, 3), torch.zeros(4)))
    with pytest.raises(ValueError, match="scalar tensor"):
        train_module(make_net(), lambda m, b: m(b[0]), torch.zeros(4, 3))


def test_options_object_plans_the_run_that_train_module_runs():
    X, y = regression_data(50)
    options = TrainingOptions(batch_size=8, max_epochs=3, validation_fraction=0.2, early_stopping=False, warmup=2)
    assert options.n_validation(50) == 10 and options.n_validation(1) == 0
    plan = options.plan(n_train=40)
    assert (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps) == (5, 15, 2)
    h = run_training(make_net(), mse, (X, y), options, random_state=0)
    assert h.n_steps == plan.total_steps and len(h.val_loss) == 3
    h2 = train_module(make_net(), mse, (X, y), batch_size=8, max_epochs=3, validation_fraction=0.2,
                      early_stopping=False, warmup=2, random_state=0)
    assert h.train_loss == h2.train_loss and h.val_loss == h2.val_loss
    with pytest.raises(TypeError, match="options must be a TrainingOptions"):
        run_training(make_net(), mse, (X, y), {"batch_size": 8})
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.lr = 1.0
    with pytest.raises(ValueError, match="cannot be shared by 4 processes"):
        options.plan(n_train=3, world_size=4)


def test_mixed_precision_is_ignored_on_cpu():
    X, y = regression_data()
    net = make_net()
    h = train_module(net, mse, (X, y), max_epochs=2, mixed_precision=True, random_state=0)
    assert next(net.parameters()).dtype == torch.float32 and len(h.train_loss) == 2


def test_weight_decay_skips_vectors_and_flagged_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    net[1].weight._no_weight_decay = True
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    # zero gradients: only decoupled weight decay moves parameters
    train_module(net, lambda m, b: (m(b[0]) * 0).sum(), torch.zeros(4, 2), max_epochs=1, batch_size=4, lr=0.1,
                 weight_decay=0.5, schedule="constant", random_state=0)
    assert torch.allclose(net[0].weight, torch.full((2, 2), 0.95))
    for p in (net[0].bias, net[1].weight, net[1].bias):
        assert torch.equal(p, torch.ones_like(p))


def test_num_threads_is_restored():
    X, y = regression_data(8)
    before = torch.get_num_threads()
    train_module(make_net(), mse, (X, y), max_epochs=1, num_threads=2)
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------- DDP
def _ddp_worker(out_dir):
    from probkit.distributed import init_distributed

    rank, world = init_distributed(backend="gloo")
    torch.set_num_threads(1)
    X, y = regression_data(50)
    net = make_net()
    h = train_module(net, mse, (X, y), batch_size=4, max_epochs=3, lr=0.05, validation_fraction=0.2,
                     random_state=0)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), world=world, train=np.array(h.train_loss),
             val=np.array(h.val_loss), **state)
    import torch.distributed as dist

    dist.destroy_process_group()


def test_ddp_on_two_processes_matches_one_process_with_twice_the_batch(tmp_path):
    from probkit.distributed import _free_port

    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2",
               OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), str(tmp_path)], cwd=ROOT,
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    for p in procs:
        try:
            log = p.communicate(timeout=180)[0]
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("DDP workers timed out")
        assert p.returncode == 0, log[-3000:]
    r0, r1 = (dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2))
    assert int(r0["world"]) == 2
    for key in r0:
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=key)      # every rank holds the same model
    # one process, same split and shuffles, batches of 8 = the union of the two ranks' batches of 4
    X, y = regression_data(50)
    net = make_net()
    h = train_module(net, mse, (X, y), batch_size=8, max_epochs=3, lr=0.05, validation_fraction=0.2,
                     random_state=0)
    np.testing.assert_allclose(r0["val"], h.val_loss, rtol=1e-5)
    for k, v in net.state_dict().items():
        np.testing.assert_allclose(r0[k], v.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)


if __name__ == "__main__":
    _ddp_worker(sys.argv[1])


def test_ssm_dynamics_parameters_are_not_weight_decayed():
    from probkit.neural import build_backbone
    from probkit.neural.estimators._training import _param_groups

    for kind, names in (("mamba", ("A_log", "D", "dt_proj.bias")), ("s4d", ("log_dt", "log_A_real", "A_imag"))):
        net = build_backbone(kind, d_model=8, n_layers=1)
        decayed = {id(p) for p in _param_groups(net, 0.1)[0]["params"]}
        exempt = [n for n, p in net.named_parameters() if n.endswith(names) and id(p) not in decayed]
        flagged = [n for n, p in net.named_parameters() if n.endswith(names)]
        assert flagged and exempt == flagged, (kind, flagged, exempt)
        # the projections are still decayed
        assert any(id(p) in decayed for n, p in net.named_parameters() if n.endswith("weight") and p.dim() >= 2)
