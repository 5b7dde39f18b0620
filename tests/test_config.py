"""Every option composes, validates and instantiates; bad values stop with one clear line."""

import inspect
import os
import subprocess
import sys

import pytest
import torch
from hydra.utils import get_class, instantiate

from initlab.build import schedule
from initlab.config.check import ConfigError, validate
from initlab.build.data import DataError, load
from initlab.build.init import apply_init
from initlab.build.model import MLP

from conftest import CONF, make_config, run_initlab

OPTIONS = {group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
           for group in ("init", "bias", "model", "lr", "optim", "data", "trainer")}


def test_every_group_has_its_options():
    assert set(OPTIONS["init"]) == {"normal", "uniform", "constant", "xavier_uniform", "xavier_normal",
                                    "kaiming_uniform", "kaiming_normal", "orthogonal", "lecun_normal", "trunc_normal",
                                    "torch_default", "zeros", "variance_scaling", "lsuv"}
    assert set(OPTIONS["bias"]) == {"zeros", "constant", "normal", "torch_default"}
    assert set(OPTIONS["lr"]) == {"constant", "step", "cosine", "warmup"}
    assert set(OPTIONS["optim"]) == {"sgd", "momentum", "adam", "adamw"}
    assert set(OPTIONS["data"]) == {"mnist", "fashion_mnist", "kmnist", "synthetic"}


@pytest.mark.parametrize("option, optimizer", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_options_are_torchs_own_defaults(option, optimizer):
    # Names mean what torch means: optim=adamw is torch.optim.AdamW as torch builds it (weight decay 0.01).
    optim = validate(make_config(f"optim={option}"))["optim"]
    defaults = inspect.signature(optimizer).parameters
    assert optim["_target_"] == f"torch.optim.{optimizer.__name__}"
    assert {k: v for k, v in optim.items() if k != "_target_"} == {
        k: list(defaults[k].default) if k == "betas" else defaults[k].default for k in ("betas", "eps", "weight_decay")}


@pytest.mark.parametrize("option", [f"init={o}" for o in OPTIONS["init"]] + [f"bias={o}" for o in OPTIONS["bias"]])
def test_init_and_bias_options_instantiate(option):
    settings = validate(make_config(option))
    model = MLP(30, 10, depth=2, width=20)
    apply_init(model, settings["init"], settings["bias"], "relu")
    assert all(torch.isfinite(layer.weight).all() and torch.isfinite(layer.bias).all() for layer in model.linears)


@pytest.mark.parametrize("option", OPTIONS["lr"])
def test_lr_options_instantiate(option):
    settings = validate(make_config(f"lr={option}"))
    lr_at = schedule.build(settings["lr"])
    rates = [lr_at(s, total_steps=3000, steps_per_epoch=300) for s in range(0, 3000, 50)]
    assert all(0 <= r <= settings["lr"]["value"] for r in rates) and max(rates) > 0


@pytest.mark.parametrize("option", OPTIONS["optim"])
def test_optim_options_instantiate(option):
    settings = validate(make_config(f"optim={option}"))
    optimizer = instantiate(settings["optim"], params=MLP(4, 2, 1, 3).parameters(), lr=0.01, _convert_="all")
    assert isinstance(optimizer, torch.optim.Optimizer)


def test_a_torch_optimizer_setting_no_option_names_reaches_torch():
    # The keys are torch's signature: amsgrad is allowed and built into the optimizer as torch means it.
    settings = validate(make_config("optim=adam", "+optim.amsgrad=true"))
    optimizer = instantiate(settings["optim"], params=MLP(4, 2, 1, 3).parameters(), lr=0.01, _convert_="all")
    assert optimizer.defaults["amsgrad"] is True


def test_the_stacked_optimizers_refuse_a_setting_they_would_not_reproduce():
    from initlab.stacked.models import check_reproduced

    check_reproduced(validate(make_config("optim=momentum", "+optim.dampening=0.5"))["optim"])  # reproduced
    check_reproduced(validate(make_config("optim=adam", "+optim.amsgrad=false"))["optim"])  # torch's default
    with pytest.raises(ConfigError) as info:
        check_reproduced(validate(make_config("optim=adam", "+optim.amsgrad=true"))["optim"])
    assert str(info.value) == ("optim.amsgrad=true: the vectorized launcher's stacked torch.optim.Adam does not "
                               "reproduce it (it reproduces betas, eps, weight_decay); run this sweep with "
                               "hydra/launcher=basic")


@pytest.mark.parametrize("option", OPTIONS["data"])
def test_data_options_validate_and_name_a_real_loader(option):
    settings = validate(make_config(f"data={option}"))
    target = settings["data"]["source"]["_target_"]
    assert callable(get_class(target))


@pytest.mark.parametrize("option", OPTIONS["model"] + ["mlp model.activation=tanh model.output_activation=relu"])
def test_model_options_instantiate(option):
    first, *rest = option.split()
    settings = validate(make_config(f"model={first}", *rest))
    model = instantiate(settings["model"], in_features=784, num_classes=10)
    assert model(torch.zeros(3, 784)).shape == (3, 10)


def test_lr_value_sweeps_every_schedule():
    for option in OPTIONS["lr"]:
        assert validate(make_config(f"lr={option}", "lr.value=0.3"))["lr"]["value"] == 0.3


def test_mnist_loads_from_the_shared_files():
    data = load(validate(make_config("data=mnist"))["data"], torch.device("cpu"))
    assert data.train_x.shape == (60000, 784) and data.test_x.shape == (10000, 784)
    assert data.num_classes == 10
    # Normalized with MNIST's own mean and std, so the training set is ~N(0, 1) overall.
    assert data.train_x.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert data.train_x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_missing_dataset_is_one_line(tmp_path):
    cfg = make_config("data=kmnist", f"data.source.root={tmp_path}", "data.source.download=false")
    with pytest.raises(DataError) as info:
        load(validate(cfg)["data"], torch.device("cpu"))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "KMNIST" in message


@pytest.mark.parametrize("override, expected", [
    ("lr.value=-0.1", "lr.value=-0.1: must be a number > 0"),
    ("lr.value=0", "lr.value=0: must be a number > 0"),
    ("lr.value=abc", "lr.value='abc': must be a number > 0"),
    ("model.depth=0", "model.depth=0: must be an integer >= 1"),
    ("model.width=0", "model.width=0: must be an integer >= 1"),
    ("model.depth=2.5", "model.depth=2.5: must be an integer >= 1"),
    # model, lr schedules and generated data: their callable's signature is their schema
    ("model.negative_slope=-1", "model.negative_slope=-1: must be a number >= 0"),
    ("+model.dropout=0.1", "model.dropout: not a setting of initlab.model.MLP (allowed: depth, width, activation,"),
    ("model._target_=torch.nn.Linear", "model._target_='torch.nn.Linear': must be one of initlab.model.MLP"),
    ("lr=step lr.gamma=1.5", "lr.gamma=1.5: must be a number in (0, 1]"),
    ("lr=step lr.step_epochs=0", "lr.step_epochs=0: must be an integer >= 1"),
    ("lr=cosine lr.min_value=0.5", "lr.value=0.01, lr.min_value=0.5: min_value must not exceed value"),
    ("lr=warmup lr.then=linear", "lr.then='linear': must be one of constant, cosine"),
    ("+lr.gamma=0.5", "lr.gamma: not a setting of initlab.schedule.constant (allowed: value)"),
    ("lr._target_=mymodule.rate", "lr._target_='mymodule.rate': no module 'mymodule' can be imported"),
    ("data=synthetic data.source.num_classes=1", "data.source.num_classes=1: must be an integer >= 2"),
    ("data=synthetic data.source.separation=0", "data.source.separation=0: must be a number > 0"),
    ("trainer.batch_size=0", "trainer.batch_size=0: must be an integer >= 1"),
    ("trainer.epochs=0", "trainer.epochs=0: must be an integer >= 1"),
    ("model.activation=swish", "model.activation='swish': must be one of relu, leaky_relu, tanh, sigmoid"),
    ("model.output_activation=softmax", "model.output_activation='softmax': must be one of relu"),
    ("trainer.device=gpu", "trainer.device='gpu': must be auto, cpu, cuda, cuda:N or mps"),
    ("init=kaiming_normal init.mode=fan_avg", "init.mode='fan_avg': must be one of fan_in, fan_out"),
    ("init=uniform init.a=1 init.b=0", "init.a=1, init.b=0: a must be less than b"),
    ("init=normal init.std=-1", "init.std=-1: must be a number >= 0"),
    ("init=xavier_normal init.gain=0", "init.gain=0: must be a number > 0, auto or critical"),
    ("init=xavier_normal init.gain=big", "init.gain='big': must be a number > 0, auto or critical"),
    ("init=kaiming_normal init.nonlinearity=swish", "init.nonlinearity='swish': must be one of linear, relu, leaky_relu"),
    ("init=variance_scaling init.scale=0", "init.scale=0: must be a number > 0"),
    ("init=variance_scaling init.mode=fan_max", "init.mode='fan_max': must be one of fan_in, fan_out, fan_avg"),
    ("init=variance_scaling init.distribution=cauchy", "init.distribution='cauchy': must be one of truncated_normal"),
    ("init=trunc_normal init.a=3", "init.a=3, init.b=2.0: a must be less than b"),
    ("init=constant init.val=x", "init.val='x': must be a number"),
    ("bias=normal bias.std=-0.1", "bias.std=-0.1: must be a number >= 0"),
    ("bias=constant bias.value=small", "bias.value='small': must be a number"),
    ("bias=normal ~bias.std", "bias.std is missing: initlab.bias.normal_ needs it"),
    ("+init.bias=0.0", "init.bias: not a setting of initlab.init.kaiming_normal_ (allowed: a, mode, nonlinearity)"),
    ("init._target_=torch.nn.init.xavier_normal_", "init.a: not a setting of torch.nn.init.xavier_normal_"),
    ("init._target_=nosuchmodule.scaled_", "init._target_='nosuchmodule.scaled_': no module 'nosuchmodule' can be"),
    ("init._target_=initlab.init.nope_", "init._target_='initlab.init.nope_': initlab.init has no attribute 'nope_'"),
    ("init._target_=initlab.init.GELU_GAIN", "init._target_='initlab.init.GELU_GAIN': not a function"),
    ("bias._target_=math.pi", "bias._target_='math.pi': not a function"),
    ("optim=momentum optim.momentum=1.5", "optim.momentum=1.5: must be a number in [0, 1)"),
    ("optim=adam optim.betas=[0.9]", "optim.betas=[0.9]: must be two numbers in [0, 1)"),
    # torch's optimizers and torchvision's datasets: torch's signature is the schema, ranges by key name
    ("optim=adam optim.eps=0", "optim.eps=0: must be a number > 0"),
    ("optim.weight_decay=-1", "optim.weight_decay=-1: must be a number >= 0"),
    ("+optim.dampening=1", "optim.dampening=1: must be a number in [0, 1)"),
    ("+optim.amsgrad=true", "optim.amsgrad: not a setting of torch.optim.SGD (allowed: momentum, dampening, "
                            "weight_decay, nesterov, maximize, foreach, differentiable, fused)"),
    ("+optim.lr=0.1", "optim.lr: not a setting of torch.optim.SGD"),  # the rate is lr.value
    ("optim=adam +optim.amsgrad=yes", "optim.amsgrad='yes': must be true or false"),
    ("optim=momentum optim.momentum=0 optim.nesterov=true",
     "optim.momentum=0, optim.dampening=0, optim.nesterov=true: nesterov needs momentum > 0 and dampening = 0"),
    ("optim._target_=torch.optim.RMSprop", "optim._target_='torch.optim.RMSprop': must be one of torch.optim.SGD,"),
    ("+data.source.transform=x", "data.source.transform: not a setting of torchvision.datasets.MNIST (allowed: root, "
                                 "download)"),
    ("~data.source.root", "data.source.root is missing: torchvision.datasets.MNIST needs it"),
    ("data.source._target_=torchvision.datasets.CIFAR10", "data.source._target_='torchvision.datasets.CIFAR10': "
                                                          "must be one of torchvision.datasets.MNIST,"),
    ("+init.gian=2", "init.gian: not a setting of initlab.init.kaiming_normal_ (allowed: a, mode, nonlinearity)"),
    ("+trainer.epoch=2", "trainer.epoch: not a setting of trainer (allowed: epochs,"),
])
def test_bad_values_name_key_value_and_what_is_allowed(override, expected):
    with pytest.raises(ConfigError) as info:
        validate(make_config(*override.split()))
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "initlab", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_bad_value_is_one_line_and_exit_2(tmp_path):
    result = _cli("lr.value=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "initlab: lr.value=-1: must be a number > 0"
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("summary.json"))


def test_cli_missing_data_is_one_line_and_exit_2(tmp_path):
    # in this process (conftest.run_initlab): the fresh process's one line of a ConfigError or DataError,
    # caught in the same place, is test_cli_bad_value's and test_environment's
    result = run_initlab(["data.source.root=" + str(tmp_path / "nowhere"), "data.source.download=false",
                          "data.cache=false"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MNIST could not be loaded from" in lines[0] and "nowhere" in lines[0]


@pytest.mark.parametrize("study", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_named_studies_compose_and_validate(study):
    settings = validate(make_config(f"experiment={study}"))
    activation = {"glorot_tanh": "tanh", "edge_of_chaos": "tanh", "dynamical_isometry": "relu"}.get(study, "relu")
    assert settings["data"]["name"] == "mnist" and settings["model"]["activation"] == activation


def test_the_theory_studies_are_the_papers_settings():
    eoc = validate(make_config("experiment=edge_of_chaos"))
    # Schoenholz et al. 2017: tanh, sigma_b^2 = 0.05, sigma_w^2 = init.scale (variance_scaling, fan_in, Gaussian)
    assert eoc["init"]["_target_"] == "initlab.init.variance_scaling_" and eoc["init"]["mode"] == "fan_in"
    assert eoc["init"]["distribution"] == "normal" and eoc["bias"]["std"] ** 2 == pytest.approx(0.05, rel=1e-6)
    assert eoc["model"]["width"] == 300 and eoc["optim"]["_target_"] == "torch.optim.SGD"
    iso = validate(make_config("experiment=dynamical_isometry"))
    assert iso["init"]["gain"] == "critical" and iso["trainer"]["jacobian_inputs"] > 0


def test_stuck_loss_study_is_the_founding_example():
    s = validate(make_config("experiment=stuck_loss"))
    assert s["init"] == {"_target_": "initlab.init.normal_", "mean": 0.0, "std": 1.0}
    assert s["bias"] == {"_target_": "initlab.bias.zeros_"}
    assert (s["model"]["depth"], s["model"]["width"], s["model"]["output_activation"]) == (2, 200, "relu")
    assert s["optim"]["_target_"] == "torch.optim.SGD" and s["lr"]["value"] == 0.01
    assert (s["trainer"]["epochs"], s["trainer"]["batch_size"]) == (10, 200)
    assert (s["data"]["mean"], s["data"]["std"]) == (0.1307, 0.3081)


@pytest.mark.parametrize("study", ["stuck_loss_kaiming", "init_comparison", "depth_study", "glorot_tanh", "lr_sweep"])
def test_named_sweeps_run_as_multiruns_and_write_their_report(study):
    from hydra import compose, initialize_config_dir
    from hydra.types import RunMode

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={study}"], return_hydra_config=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN and cfg.hydra.sweeper.params
    assert cfg.hydra.callbacks.sweep_end.report is True
