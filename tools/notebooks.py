"""The tutorials' notebooks, written from the cells below: each is a short tutorial that calls
the library and the example scripts' functions, with a sentence between the cells on what to
look at, results as tables and figures.

Each notebook's cells are listed here (one source of truth, so that a committed notebook
cannot drift from what this file gives); the work is done by functions of ``examples/``,
which the notebook imports: from the repository it lives in, or from a clone it makes where
it is opened alone (Colab), installing there what it uses::

    python tools/notebooks.py            # write notebooks/*.ipynb
    python tools/notebooks.py --check    # fail if a committed notebook is not the generated one

A test executes the notebooks with ``SMOKE = True`` (``nbclient``) and checks their outputs.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES, TUTORIALS, NOTEBOOKS = ROOT / "examples", ROOT / "docs" / "tutorials", ROOT / "notebooks"
REPOSITORY = "signattack/signattack"
"""Where the notebooks live on GitHub, for their "Open in Colab" links and the clone."""

SITE = "https://signattack.github.io/signattack"
MARKDOWN, CODE = "-- markdown --", "-- code --"
"""The lines that open a cell in a notebook's ``body``."""


@dataclass(frozen=True)
class Notebook:
    """One tutorial's notebook.

    Attributes:
        name: The notebook's file name, without ``.ipynb``.
        tutorial: The tutorial page it goes with (under ``docs/tutorials``), or a concept page.
        example: The example script whose functions it calls (under ``examples/``).
        intro: What the notebook shows, and what ``SMOKE`` changes (markdown).
        body: Its cells, each opened by a line ``-- markdown --`` or ``-- code --``.
        extra: The extra of signattack it installs (``{root}[demo]``), whose modules it needs.
        needs: Modules the library's functions it calls need beyond its imports and the
            extra's (``sklearn`` for ``digit_arrays``, ``matplotlib`` for the plots).
        part: The part of the problem set it belongs to, for the map of the problem set.
    """

    name: str
    tutorial: str
    example: str
    intro: str
    body: str
    extra: str = "demo"
    needs: tuple[str, ...] = ()
    part: str = ""

    @property
    def uses(self) -> tuple[tuple[str, str], ...]:
        """Per module the notebook needs, what to ``pip install`` where it is missing;
        ``{root}`` stands for the repository (``{root}[demo]``: signattack with its extra).
        Derived from the imports of its code cells and of the examples they import (in
        turn), the extra's modules and ``needs``."""
        modules = imported_by([text for kind, text in _cells(self.body) if kind == CODE])
        modules |= {*EXTRAS[self.extra], *self.needs}
        unknown = sorted(modules - set(PACKAGES) - {"signattack"})
        if unknown:
            raise ValueError(
                f"{self.name}: no pip name for {', '.join(unknown)}: add it to PACKAGES"
            )
        others = sorted(modules - {"signattack"}, key=str.lower)
        return (
            ("signattack", f"{{root}}[{self.extra}]"),
            *((module, PACKAGES[module]) for module in others),
        )


PACKAGES = {
    "IPython": "ipython",
    "equinox": "equinox",
    "jax": "jax",
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "sklearn": "scikit-learn",
    "torch": "torch",
    "torchvision": "torchvision",
    "tqdm": "tqdm",
}
"""What ``pip`` installs each module a notebook may import as."""

EXTRAS = {
    "demo": ("torch", "sklearn", "matplotlib", "tqdm"),
    "jax": ("jax",),
}
"""The modules each extra of signattack (``pyproject.toml``) brings."""


def imported_by(codes: Iterable[str]) -> set[str]:
    """The installable modules that ``codes`` import, with those the examples they import
    import in turn (every import, also inside a function): top-level names, without the
    standard library and the examples themselves."""
    examples = {path.stem for path in EXAMPLES.glob("*.py")}
    modules: set[str] = set()
    pending, seen = list(codes), set()
    while pending:
        for node in ast.walk(ast.parse(pending.pop())):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = {node.module.split(".")[0]}
            else:
                continue
            for name in names - seen:
                seen.add(name)
                if name in examples:
                    pending.append((EXAMPLES / f"{name}.py").read_text())
                elif name not in sys.stdlib_module_names:
                    modules.add(name)
    return modules


SETUP = """# The example scripts: in this notebook's repository, or in a clone made here (Colab).
import importlib.util
import subprocess
import sys
from pathlib import Path

here = Path.cwd()
root = next((p for p in (here, *here.parents) if (p / "examples/_common.py").is_file()), None)
if root is None:
    root = here / "signattack"
    if not root.exists():
        url = "https://github.com/{repository}"
        subprocess.run(["git", "clone", "-q", "--depth", "1", url, root], check=True)
# Install what this notebook uses, where it is missing.
uses = {{
{uses}
}}
missing = {{need for module, need in uses.items() if importlib.util.find_spec(module) is None}}
if missing:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *sorted(missing)], check=True)
    importlib.invalidate_caches()
sys.path.insert(0, str(root / "examples"))"""

DEMO = Notebook(
    "demo",
    "demo.md",
    "",
    "It trains a small CNN on scikit-learn's handwritten digits (nothing is downloaded), then "
    "attacks it with FGSM and the iterated signed-gradient attack at several radii. "
    "`SMOKE = True` trains for 2 epochs and attacks with 3 steps (seconds); `False` uses the "
    "demo's settings (12 epochs, 10 steps: about 20 s on two CPU cores).",
    """-- markdown --
## Train and attack

`run_demo` trains the CNN, attacks it at every radius and writes its figure into `OUT`.
-- code --
from pathlib import Path

from IPython.display import Image, Markdown
from _common import markdown_table

from signattack.demo import run_demo

SMOKE = True  # False: the demo's settings
OUT = Path("out/demo")
report = run_demo(OUT, epochs=2 if SMOKE else 12, steps=3 if SMOKE else 10)
-- markdown --
Accuracy on the held-out digits at each radius `eps` (pixel levels in [0, 255]). FGSM takes one
step of size `eps`; `IteratedSign` takes several smaller ones inside the same ball, so at every
radius it should leave at most as many digits correct as FGSM.
-- code --
rows = [
    (f"{eps:g}", f"{report.clean_accuracy:.1%}", f"{fgsm:.1%}", f"{iterated:.1%}")
    for eps, fgsm, iterated in zip(report.eps, report.fgsm_accuracy, report.iterated_accuracy)
]
Markdown(markdown_table(("eps", "clean", "FGSM", f"IteratedSign({report.steps})"), rows))
-- markdown --
Clean digits beside their adversarial versions, and the mean loss against the attack step: the
changes are small to the eye, yet each step raises the loss and flips more predictions.
-- code --
Image(filename=OUT / "digits_attack.png")""",
)

RESNET18 = Notebook(
    "resnet18",
    "resnet18.md",
    "resnet18_params.py",
    "It counts torchvision's ResNet-18 layer by layer, draws it with its skip connections, and "
    "splits its parameters into the three groups weight decay treats differently. Counting "
    "needs no weights and no data: it runs in seconds, there is nothing to shrink for a smoke "
    "run.",
    """-- markdown --
## Count

`parameter_table` counts every tensor of the network; its summary gives the total and
the three groups.
-- code --
from pathlib import Path

import torchvision
from IPython.display import Image, Markdown
from _common import markdown_table
from resnet18_params import draw, layer_rows, stage_counts

from signattack import param_groups, parameter_table

OUT = Path("out/resnet18")
OUT.mkdir(parents=True, exist_ok=True)
model = torchvision.models.resnet18(weights=None)  # untrained: counting needs no weights
table = parameter_table(model)
table
-- markdown --
Per stage: each stage doubles the channels of the one before, so its 3x3 convolutions have four
times the weights; `layer4` alone holds most of the 11,689,512 parameters.
-- code --
stages = [(stage, f"{count:,}") for stage, count in stage_counts(table).items()]
Markdown(markdown_table(("stage", "parameters"), stages))
-- markdown --
Layer by layer: the convolutions hold almost everything, each batch-norm holds a scale and a
shift per channel, and only `fc` has a bias (a convolution followed by batch-norm needs none:
batch-norm's shift does its job). The `downsample` layers sit on the skip connections.
-- code --
layers = layer_rows(model, table)
header = ("layer", "type", "settings", "tensors", "count")
Markdown(markdown_table(header, [(*list(r.values())[:4], f"{r['count']:,}") for r in layers]))
-- markdown --
The architecture: every basic block with its skip connection (orange), and the three 1x1
stride-2 convolutions that downsample the skip where a stage halves the resolution; the darker a
box, the more parameters it holds.
-- code --
Image(filename=draw(model, table, OUT / "resnet18_architecture.png"))
-- markdown --
`param_groups` splits the parameters in three. Weight decay belongs on `weights` only:
batch-norm's scale and shift and the biases set each channel's scale and offset, so decaying
them changes the function itself, while a convolution followed by batch-norm is
scale-invariant and decay only raises its effective learning rate.
-- code --
groups = param_groups(model)
few = groups.counts()["bn_affine"] + groups.counts()["biases"]
print(f"left out of weight decay: {few:,} of {table.total:,} parameters ({few / table.total:.2%})")
groups
-- markdown --
What to conclude: the groups left out of the decay are a tenth of a percent of the network, so
leaving them out costs nothing in regularisation.""",
    part="P1",
)

CIFAR10_TRAIN = Notebook(
    "cifar10_train",
    "cifar10-train.md",
    "cifar10_train.py",
    "It trains the All-CNN of the problem set with its recipe. `SMOKE = True` (what the tests "
    "run) does **not** use CIFAR-10: it writes a small synthetic stand-in (colour patterns, not "
    "photographs) and trains a narrow All-CNN for 2 epochs, which shows the pipeline works "
    "and nothing about the All-CNN. `SMOKE = False` downloads CIFAR-10 (163 MB, checked "
    "against its published MD5) into the folder you name in `CIFAR10` and trains for 100 "
    "epochs: hours, use a GPU (on Colab: Runtime, Change runtime type).",
    """-- markdown --
## Settings

`CIFAR10` is where CIFAR-10 goes (created if missing; a folder that holds it already is used
as it is). The checkpoint and the figures go to `OUT`.
-- code --
from pathlib import Path

from IPython.display import Image, Markdown
from _common import markdown_table

SMOKE = True  # False: real CIFAR-10 and the problem set's 100 epochs
CIFAR10 = Path("data/cifar10")  # name your own folder
OUT = Path("out/cifar10_train-smoke" if SMOKE else "out/cifar10_train")
-- markdown --
## The data
-- code --
from signattack.data import fetch_cifar10, write_synthetic_cifar10

if SMOKE:
    data = write_synthetic_cifar10(OUT / "synthetic-cifar10", train_size=96, test_size=48)
    print(f"SMOKE: a synthetic stand-in for CIFAR-10 in {data} (colour patterns, not CIFAR-10)")
else:
    data = fetch_cifar10(CIFAR10)
    print(f"CIFAR-10 in {data}")
-- markdown --
## The network and its parameter groups

The All-CNN takes pixels in [0, 255] and normalises inside. Weight decay goes on the
`weights` group only: batch-norm's affine parameters and the biases are not decayed.
-- code --
from cifar10_train import COURSE_CHANNELS, SMOKE_CHANNELS, train

from signattack import param_groups
from signattack.models import AllCNN

channels = SMOKE_CHANNELS if SMOKE else COURSE_CHANNELS
param_groups(AllCNN(channels=channels))
-- markdown --
## Training

SGD with Nesterov momentum 0.9, learning rate 0.1, then 0.01 after 40% of the epochs and 0.001
after 80%, with flips and brightness/contrast augmentation. A checkpoint is written after every
epoch; with `SMOKE = False` running the cell again resumes from it after an interruption.
-- code --
results = train(
    data,
    OUT,
    epochs=2 if SMOKE else 100,
    batch_size=32 if SMOKE else 128,
    channels=channels,
    resume=not SMOKE,
)
-- markdown --
Epoch by epoch: the training error should fall at once, and the validation error drop at each
cut of the learning rate. The problem set's target is a validation error below 12%.
-- code --
history = results["history"]
rows = [
    (epoch + 1, f"{history['lr'][epoch]:g}", f"{history['train_loss'][epoch]:.3f}",
     f"{history['train_error'][epoch]:.1%}", f"{history['val_loss'][epoch]:.3f}",
     f"{history['val_error'][epoch]:.1%}")
    for epoch in range(len(history["lr"]))
]
header = ("epoch", "lr", "training loss", "training error", "validation loss", "validation error")
Markdown(markdown_table(header, rows))
-- markdown --
The same as curves; the dotted line is the target.
-- code --
Image(filename=OUT / "training_curves.png")""",
    part="P2",
)

CIFAR10_ATTACK = Notebook(
    "cifar10_attack",
    "cifar10-attack.md",
    "cifar10_attack.py",
    "It attacks a trained network three ways: input-gradient maps, the loss against the attack "
    "step, and the accuracy under FGSM and the iterated attack. `SMOKE = True` (what the tests "
    "run) does **not** use CIFAR-10: a digits CNN trained here for 2 epochs on scikit-learn's "
    "handwritten digits stands in for the All-CNN. `SMOKE = False` reads the checkpoint that "
    "the notebook *Training the All-CNN* wrote and CIFAR-10's test split from the folder you "
    "name in `CIFAR10` (downloaded there if it is missing).",
    """-- markdown --
## Settings
-- code --
from pathlib import Path

from IPython.display import Image, Markdown
from _common import markdown_table
from cifar10_attack import cifar10_problem, digits_problem, study

from signattack.data import fetch_cifar10

SMOKE = True  # False: the All-CNN trained on CIFAR-10
CIFAR10 = Path("data/cifar10")  # name your own folder
CHECKPOINT = Path("out/cifar10_train/checkpoint.pt")  # written by the training notebook
OUT = Path("out/cifar10_attack-smoke" if SMOKE else "out/cifar10_attack")
-- markdown --
## The network and the validation images
-- code --
if SMOKE:
    model, (images, labels), classes = digits_problem(smoke=True)
    print("SMOKE: a digits CNN on scikit-learn's handwritten digits stands in for CIFAR-10")
else:
    model, (images, labels), classes = cifar10_problem(CHECKPOINT, fetch_cifar10(CIFAR10))
print(f"{len(labels)} validation images of {len(classes)} classes")
-- markdown --
## The study

One call runs the three parts at the problem set's settings (eps = 8 pixel levels, 5 steps)
and writes the figures into `OUT`.
-- code --
results = study(model, images, labels, classes, OUT)
-- markdown --
Input-gradient maps, each on its own scale (red raises the loss, blue lowers it), of four
correctly and four wrongly classified images: look for whether the gradient follows the object
or is spread as noise over the image.
-- code --
Image(filename=OUT / "gradient_maps.png")
-- markdown --
Mean loss against the attack step on a 100-image minibatch. The problem's unprojected attack adds
`8 * sign(grad)` at every step and may wander 40 levels away; the projected one stays within 8
levels, so its loss climbs less: compare attacks only within the same ball.
-- code --
Image(filename=OUT / "loss_vs_step.png")
-- markdown --
Accuracy on all validation images: clean, after one FGSM step, after the projected 5-step
attack. The iterated attack should leave at most as many images correct as FGSM.
-- code --
rows = [(name, f"{value:.1%}") for name, value in results["accuracy"].items()]
Markdown(markdown_table(("images", "accuracy"), rows))""",
    part="P3",
)

BN_SCALE_INVARIANCE = Notebook(
    "bn_scale_invariance",
    "bn-scale-invariance.md",
    "bn_scale_invariance.py",
    "It shows that batch-norm makes the weights before it scale-invariant, checks the "
    "problem's equation (2) for one SGD step, and trains with and without weight decay to see "
    "the effective learning rate. `SMOKE = True` trains for 2 epochs (seconds); `False` for 30.",
    """-- markdown --
## The data and the network

scikit-learn's digits (nothing is downloaded) and an untrained conv + batch-norm network.
-- code --
from pathlib import Path

import torch
from bn_scale_invariance import (
    SCALES,
    direction_steps,
    exponent,
    network,
    plot,
    training_runs,
    under_scaling,
)
from IPython.display import Image, Markdown
from _common import markdown_table

from signattack.digits import load_digits

SMOKE = True  # False: 30 training epochs
OUT = Path("out/bn_scale_invariance")
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
data = load_digits(seed=0)
x, y = data.x_train, data.y_train
model = network()  # conv -> BN -> ReLU -> conv -> BN -> ReLU -> linear
batch = (x[:256] / 255, y[:256])
-- markdown --
## Part 1: the loss does not see the scale

Scale the first convolution's weight and bias by `lambda`. In train mode batch-norm divides the
scale out: the loss should stay the same and the gradient fall as `1 / lambda`. In eval mode,
with running statistics, the invariance is gone.
-- code --
in_train, in_eval = under_scaling(model, batch)
rows = zip(SCALES, in_train.losses, in_eval.losses, in_train.grad_norms)
header = ("lambda", "loss, train mode", "loss, eval mode", "gradient norm, train mode")
print(f"gradient norm ~ lambda^{exponent(SCALES, in_train.grad_norms):.3f} (expected -1)")
cells = [(f"{s:g}", f"{a:.6f}", f"{b:.4f}", f"{g:.4g}") for s, a, b, g in rows]
Markdown(markdown_table(header, cells))
-- markdown --
## Part 3: equation (2), one SGD step

A step of size `lr` moves the direction `w / |w|` by `lr |grad| / |w|` to first order. The
measured step should match the prediction, and the error of the prediction fall as `lr^2`.
-- code --
steps = direction_steps(model, batch, model[0].weight)
rows = zip(steps["lr"], steps["measured"], steps["predicted"], steps["error"])
print(f"the error falls as lr^{exponent(steps['lr'], steps['error']):.2f} (expected 2)")
header = ("lr", "step of w/|w|, measured", "predicted lr |grad| / |w|", "error")
cells = [(f"{r:g}", f"{m:.6f}", f"{p:.6f}", f"{e:.1e}") for r, m, p, e in rows]
Markdown(markdown_table(header, cells))
-- markdown --
## Part 2: weight decay sets the effective learning rate

Train twice, without and with weight decay on the weights (`param_groups`), and follow the
second convolution's `|w|` and its effective learning rate `lr / |w|^2`. Without decay `|w|`
grows and the effective rate decays; with decay `|w|` settles.
-- code --
runs = training_runs(x, y, epochs=2 if SMOKE else 30, seed=0)
rows = [
    (name, f"{run['norm'][0]:.2f} -> {run['norm'][-1]:.2f}",
     f"{run['effective_lr'][0]:.2e} -> {run['effective_lr'][-1]:.2e}")
    for name, run in runs.items()
]
Markdown(markdown_table(("run", "|w|, first -> last epoch", "lr / |w|^2"), rows))
-- markdown --
All three parts in one figure.
-- code --
probe_train = (list(in_train.losses), list(in_train.grad_norms))
figure = plot(probe_train, list(in_eval.losses), runs, steps, OUT / "scale_invariance.png")
Image(filename=figure)""",
    part="P4",
)

MATRIX_FACTORIZATION = Notebook(
    "matrix_factorization",
    "matrix-factorization.md",
    "matrix_factorization.py",
    "Gradient descent on `f(A, B) = |X - A B|_F^2` reaches the truncated-SVD optimum, which is "
    "not unique, and `f` is not convex. `SMOKE = True` uses a 20 x 15 matrix and 2,000 steps; "
    "`False` a 60 x 40 one and 20,000 steps.",
    """-- markdown --
## The data

A rank-3 signal plus noise. By Eckart-Young its best rank-3 approximation is its truncated
SVD, whose error is the sum of the discarded squared singular values: the optimum to reach.
-- code --
from pathlib import Path

import numpy as np
from IPython.display import Image, Markdown, display
from _common import markdown_table
from matrix_factorization import (
    along_segment,
    descend,
    loss,
    low_rank_data,
    plot,
    plot_segment,
    stable_rate,
    svd_optimum,
)

SMOKE = True  # False: a larger matrix, ten times the steps
RANK = 3
OUT = Path("out/matrix_factorization")
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
x = low_rank_data(*((20, 15) if SMOKE else (60, 40)), RANK, rng)
optimum = svd_optimum(x, RANK)
print(f"X is {x.shape[0]} x {x.shape[1]}; the best rank-{RANK} error (Eckart-Young): {optimum:.6f}")
-- markdown --
## Gradient descent reaches the optimum

Both gradients, `-2 (X - A B) B^T` and `-2 A^T (X - A B)`, from a small random start. The
excess loss over the SVD optimum should fall towards zero.
-- code --
a, b, history = descend(x, RANK, 2_000 if SMOKE else 20_000, stable_rate(x), rng)
print(f"gradient descent: {history[-1]:.6f}, relative gap {(history[-1] - optimum) / optimum:.1e}")
Image(filename=plot(history, optimum, OUT / "factorization_loss.png"))
-- markdown --
## The optimum is not unique

For any invertible `G`, `(A G, G^-1 B)` has the same product, so the same loss.
-- code --
g = rng.normal(size=(RANK, RANK)) + 3 * np.eye(RANK)
print(f"(A G, G^-1 B) with a random G: {loss(x, a @ g, np.linalg.solve(g, b)):.6f}")
-- markdown --
## f is not convex

On the straight segment between the two minima a convex `f` would stay at the minimum; here it
rises above both ends (for `G = -I` the midpoint is `(0, 0)`, where `f = |X|_F^2`).
-- code --
ts = np.linspace(0.0, 1.0, 41)
paths = {
    "G = -I": along_segment(x, a, b, -np.eye(RANK), ts),
    "G random": along_segment(x, a, b, g, ts),
}
rows = [(name, f"{v[0]:.4f}", f"{v[-1]:.4f}", f"{max(v):.4f}") for name, v in paths.items()]
print(f"|X|_F^2 = {float(np.sum(x**2)):.4f}")
display(Markdown(markdown_table(("segment", "f at t = 0", "f at t = 1", "largest f"), rows)))
Image(filename=plot_segment(paths, ts, optimum, OUT / "nonconvex_path.png"))""",
    part="P5",
)

RNN = Notebook(
    "rnn",
    "rnn.md",
    "rnn_gradients.py",
    "Exploding and vanishing gradients in recurrent networks: backpropagation through time by "
    "hand against autograd, the gradient against the horizon `T` for a linear RNN, with "
    "nonlinearities, for a non-normal matrix, clipping, and an LSTM. `SMOKE = True` goes back "
    "20 steps; `False` 60.",
    """-- markdown --
## Settings

The horizons `T`: how many steps back the gradient travels.
-- code --
import torch
from IPython.display import Markdown
from _common import markdown_table
from rnn_gradients import (
    RHOS,
    check_against_autograd,
    clipping_demo,
    gradient_norms,
    identity,
    lstm_norms,
    non_normal,
    scaled_orthogonal,
)

from signattack.plots import plot_curves

SMOKE = True  # False: horizons up to 60 steps
horizons = list(range(1, 21 if SMOKE else 61, 1 if SMOKE else 3))
generator = torch.Generator().manual_seed(0)
-- markdown --
## Backpropagation through time by hand

`delta[t] = W^T delta[t+1]` and `dL/dW = sum_t delta[t+1] z[t]^T`: the hand-derived gradients
should agree with autograd to rounding.
-- code --
print(f"largest relative difference: {check_against_autograd(generator, steps=10):.1e}")
-- markdown --
## The gradient against the horizon

For `W = rho Q` with `Q` orthogonal, `|dL/dz[0]| = rho^T |delta[T]|`: it vanishes for `rho < 1`,
stays for `rho = 1` and explodes above. Nonlinearities squash it further; for a non-normal `W`
the norm `|W|_2` above 1 would allow growth, yet the gradient falls at the spectral radius.
-- code --
linear = {
    f"rho = {rho}": gradient_norms(scaled_orthogonal(rho, 0), horizons, identity, 0)[0]
    for rho in RHOS
}
nonlinear = {
    f"tanh, rho = {rho}": gradient_norms(scaled_orthogonal(rho, 0), horizons, torch.tanh, 0)[0]
    for rho in RHOS
}
skewed = non_normal(0.9, 0)
radius = float(torch.linalg.eigvals(skewed).abs().max())
norm = float(torch.linalg.matrix_norm(skewed, ord=2))
start = gradient_norms(skewed, horizons, identity, 0)[0]
non_normal_lines = {
    "non-normal W": start,
    f"spectral radius^T ({radius:.2f})": [start[0] * radius ** (t - 1) for t in horizons],
    f"|W|_2^T ({norm:.2f})": [start[0] * norm ** (t - 1) for t in horizons],
}
panels = {"linear RNN, W = rho Q": linear, "with tanh": nonlinear, "non-normal W": non_normal_lines}
plot_curves(panels, x=horizons, xlabel="T (steps back)", ylabel=["|dL / dz[0]|"] * 3, log_y=True)
-- markdown --
## Clipping

One SGD step on an exploding linear RNN: the raw step overshoots and the loss explodes; with the
gradient clipped to norm 1 the loss falls.
-- code --
clipping = clipping_demo(generator, steps=40, lr=0.01)
rows = [(k.replace("_", " "), f"{v:.3g}") for k, v in clipping.items()]
Markdown(markdown_table(("quantity", "value"), rows))
-- markdown --
## An LSTM

The gradient reaching back through the cell state is scaled by the forget gate at every step.
At PyTorch's initialisation the gate sits near 0.5 and the gradient halves each step; a
forget-gate bias of +3 keeps the gate near 1 and the gradient alive.
-- code --
lstm = {
    "default init": lstm_norms(horizons, 0),
    "forget-gate bias +3": lstm_norms(horizons, 0, forget_bias=3.0),
}
panels = {"LSTM: the first input": lstm}
plot_curves(panels, x=horizons, xlabel="T (steps back)", ylabel="|dL / dx[0]|", log_y=True)""",
    part="P6",
)

ROBUSTNESS = Notebook(
    "robustness",
    "robustness.md",
    "robustness_curve.py",
    "A robustness curve two ways: `evaluate` at a list of radii, and each sample's smallest "
    "breaking radius by bisection, whose survival curve is the whole curve from one run. "
    "`SMOKE = True` trains the digits CNN for 2 epochs and attacks 64 digits with 3 steps; "
    "`False` trains for 12 epochs and attacks every held-out digit with 10 steps.",
    """-- markdown --
## The network

The digits CNN, trained here on scikit-learn's handwritten digits (nothing is downloaded).
-- code --
from pathlib import Path

import numpy as np
from IPython.display import Image
from _common import digits_and_model
from robustness_curve import bisection, curve, median_breaking_eps, plot

SMOKE = True  # False: the tutorial's settings
OUT = Path("out/robustness")
OUT.mkdir(parents=True, exist_ok=True)
data, model = digits_and_model(smoke=SMOKE)
x, y = (data.x_test[:64], data.y_test[:64]) if SMOKE else (data.x_test, data.y_test)
steps = 3 if SMOKE else 10
-- markdown --
## Accuracy at a list of radii

`evaluate` attacks each sample at each radius with `IteratedSign(..., early_stop=True)`. The
accuracy can only fall as eps grows, and the largest perturbation used should stay within eps:
otherwise the threat model is broken.
-- code --
report = curve(model, x, y, steps=steps)
report
-- markdown --
## Each sample's smallest breaking radius

Bisection finds, per sample, the smallest eps at which the attack breaks it (inf: not broken
up to 96; 0: misclassified already).
-- code --
breaking = bisection(model, x, y, steps=steps, iterations=4 if SMOKE else 8)
print(f"median smallest breaking eps: {median_breaking_eps(breaking)}")
print(f"unbroken at eps 96: {int(np.isinf(breaking).sum())} of {len(breaking)}")
-- markdown --
The share of samples whose smallest breaking eps exceeds eps is the robust accuracy at every eps
at once: `evaluate`'s points should lie on the curve (up to the bisection's resolution).
-- code --
Image(filename=plot(breaking, report, steps, OUT / "robustness_curve.png"))""",
)

ADVERSARIAL_TRAINING = Notebook(
    "adversarial_training",
    "adversarial-training.md",
    "adversarial_training.py",
    "Three digits CNNs: a normal one, one with PGD training and one with fast FGSM training, "
    "each evaluated by FGSM, PGD and the standard evaluation. `SMOKE = True` trains for 2 "
    "epochs and evaluates 96 digits at three radii; `False` trains for 12 epochs and "
    "evaluates every held-out digit at six radii.",
    """-- markdown --
## Data and settings

scikit-learn's digits (nothing is downloaded), the radius the robust networks train at,
the radii they are evaluated at and the three evaluations.
-- code --
from adversarial_training import evaluations, load, robustness, train, training_attacks
from IPython.display import Markdown
from _common import markdown_table

from signattack.plots import plot_robustness_curves

SMOKE = True  # False: the tutorial's settings
EPS = 32.0  # the training radius, in pixel levels
network, (x_train, y_train, x_test, y_test) = load("digits", SMOKE, 0)
if SMOKE:
    x_test, y_test = x_test[:96], y_test[:96]
radii = [8.0, 16.0, 32.0] if SMOKE else [4.0, 8.0, 16.0, 24.0, 32.0, 48.0]
specs = evaluations(3, 3) if SMOKE else evaluations(20, 10)
-- markdown --
## Training

Each network trains on its own batches: clean ones; Madry et al.'s PGD attack of each batch
(7 steps from a random start); or one FGSM step of 1.25 eps from a random start (Wong et al.,
2020), a seventh of PGD's cost.
-- code --
models = {
    name: train(network, x_train, y_train, attack, epochs=2 if SMOKE else 12, seed=0)
    for name, attack in training_attacks(EPS, 0).items()
}
-- markdown --
## Evaluation

Robust accuracy at each radius under each evaluation. Read across a row: the weaker the attack,
the more robust a network looks. FGSM flatters every network; the standard evaluation
(APGD-CE, then APGD-T on the survivors) gives the figure to report.
-- code --
panels = {name: robustness(model, x_test, y_test, specs, radii) for name, model in models.items()}
rows = [
    (name, label, f"{r.clean_accuracy:.1%}", *(f"{a:.1%}" for a in r.robust_accuracy.values()))
    for name, reports in panels.items()
    for label, r in reports.items()
]
Markdown(markdown_table(("network", "evaluation", "clean", *(f"eps {e:g}" for e in radii)), rows))
-- markdown --
The same as curves, one panel per network.
-- code --
plot_robustness_curves(panels)""",
)

LOSS_LANDSCAPE = Notebook(
    "loss_landscape",
    "loss-landscape.md",
    "loss_landscape.py",
    "The loss around inputs and around weights, seen with `signattack.probes` on the digits "
    "CNN. `SMOKE = True` trains for 2 epochs and samples each curve and surface coarsely; "
    "`False` trains for 12 epochs and samples finely.",
    """-- markdown --
## The network

The digits CNN, trained here on scikit-learn's handwritten digits; the probes look at 200
held-out digits.
-- code --
from pathlib import Path

import numpy as np
from IPython.display import Image, Markdown, display
from _common import digits_and_model, markdown_table
from loss_landscape import linearization_gaps, masking_check, plot_gaps

from signattack import plots, probes

SMOKE = True  # False: the tutorial's settings
OUT = Path("out/loss_landscape")
OUT.mkdir(parents=True, exist_ok=True)
data, model = digits_and_model(smoke=SMOKE)
x, y = data.x_test[:200], data.y_test[:200]
-- markdown --
## Along a direction in input space

The loss along the signed gradient against a random-sign and a Gaussian direction of the same
L-inf size: a few pixel levels along the signed gradient hurt, random noise of the same size
barely does.
-- code --
radii = list(np.linspace(0, 48, 7 if SMOKE else 25))
kinds = ("signed_gradient", "rademacher", "gaussian")
along = {kind: probes.loss_along(model, x, y, kind, radii, seed=0) for kind in kinds}
plots.plot_loss_along(radii, along)
-- markdown --
## The loss surface

Spanned by the signed gradient and an orthogonal random direction (Tramer et al., 2018): the
loss rises steeply along the first axis only.
-- code --
grid = list(np.linspace(-32, 32, 5 if SMOKE else 17))
plots.plot_loss_surface(probes.loss_surface(model, x, y, grid, grid, seed=0))
-- markdown --
## How linear is the loss?

FGSM's step raises the loss by about `eps |grad|_1` while the loss is close to linear; as eps
grows the prediction and the real increase part.
-- code --
gaps = linearization_gaps(model, x, y)
rows = [(eps, f"{v['actual']:.4f}", f"{v['predicted']:.4f}") for eps, v in gaps.items()]
display(Markdown(markdown_table(("eps", "actual increase", "eps |grad|_1"), rows)))
Image(filename=plot_gaps(gaps, OUT / "linearization_gap.png"))
-- markdown --
## A gradient-masking check

`check_gradients` on the model, and on the same model behind a quantiser that rounds its input:
the second has zero gradients, the sign that a gradient attack would fail for the wrong reason.
-- code --
report, masked, caught = masking_check(model, x, y)
print(f"the model: {report.problems() or 'no problems'}")
print(f"behind the quantiser: {caught[0] if caught else 'no warning'}")
-- markdown --
## In weight space

Slices of the loss along filter-normalised random directions in weight space (Li et al., 2018),
batch-norm and bias parameters left out: a trained network sits in a basin.
-- code --
alphas = list(np.linspace(-1, 1, 5 if SMOKE else 21))
weight_slice = probes.loss_slice_1d(model, (x, y), alphas, seed=0)
plots.plot_loss_slice(weight_slice, title="1-D weight slice")""",
)

GRADIENT_MASKING = Notebook(
    "gradient_masking",
    "../concepts/gradient-masking.md",
    "gradient_masking.py",
    "A digits CNN behind an 8-level input quantizer, whose gradient is zero almost everywhere: "
    "gradient attacks are fooled, Square and the straight-through gradient are not. "
    "`SMOKE = True` trains for 2 epochs and attacks 48 digits with 10 steps and 100 queries; "
    "`False` attacks every held-out digit with 100 steps and 1,000 queries.",
    """-- markdown --
## The network

The digits CNN, trained here on scikit-learn's handwritten digits (nothing is downloaded).
-- code --
from pathlib import Path

from IPython.display import Image, Markdown
from _common import digits_and_model, markdown_table
from gradient_masking import EPS, measure, plot

SMOKE = True  # False: the tutorial's settings
OUT = Path("out/gradient_masking")
OUT.mkdir(parents=True, exist_ok=True)
data, network = digits_and_model(smoke=SMOKE)
x, y = (data.x_test[:48], data.y_test[:48]) if SMOKE else (data.x_test, data.y_test)
-- markdown --
## Robust accuracy under each attack

At eps = 32 pixel levels: the gradient attacks alone on the quantized model, Square (no
gradient needed), APGD-CE through `straight_through(quantize)` (the quantizer forward, the
identity backward), the standard suite, and APGD-CE on the network without the quantizer.
-- code --
accuracy, suite = measure(network, x, y, steps=10 if SMOKE else 100, queries=100 if SMOKE else 1000)
rows = [(name, f"{value:.1%}") for name, value in accuracy.items()]
Markdown(markdown_table(("attack", f"robust accuracy at eps {EPS:g}"), rows))
-- markdown --
The gradient attacks alone report the quantized model as far more robust than it is. The
standard suite notices: its report warns when Square breaks what the gradient attacks left.
-- code --
for warning in suite.warnings:
    print("warning:", warning)
-- markdown --
As a bar chart, with the clean accuracy dashed.
-- code --
Image(filename=plot(accuracy, suite.clean_accuracy, len(y), OUT / "gradient_masking.png"))""",
)

EVALUATING_L2 = Notebook(
    "evaluating_l2",
    "evaluating-l2.md",
    "",
    "An L2 evaluation from the units of the radius to a verified export: one attack, the "
    "standard L2 suite, the report and its figure, the saved points checked again, and why the "
    "projection onto ball and box must be exact. `SMOKE = True` trains the digits CNN for 2 "
    "epochs and runs the suite with 5 steps and 50 queries on 40 digits; `False` trains for 4 "
    "epochs and runs 20 steps and 500 queries on 100.",
    """-- markdown --
## Units first

An L2 radius is a length in the units of the box the inputs live in. RobustBench's `0.5` is
written for `[0, 1]`; on the default box `(0, 255)` the same ball has radius `127.5`. Where
the inputs, the box and the radius disagree, the attack says so with a `UnitsWarning`:
images scaled to `[0, 1]` given with the pixel box, and a pixel radius on a `[0, 1]` box.
-- code --
import warnings

import torch
from signattack import L2PGD

torch.manual_seed(0)
linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
scaled = torch.rand(4, 1, 8, 8)  # images already scaled to [0, 1]
labels = torch.tensor([0, 1, 2, 3])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    L2PGD(eps=0.5, steps=1)(linear, scaled, labels)  # the box is still (0, 255)
    L2PGD(eps=127.5, steps=1, bounds=(0, 1))(linear, scaled, labels)  # a pixel radius
    L2PGD(eps=0.5, steps=1, bounds=(0, 1))(linear, scaled, labels)  # right: no warning
for warning in caught:
    print(f"{warning.category.__name__}: {str(warning.message)[:150]}...")
-- markdown --
## A model, and one attack

The digits CNN, trained here on scikit-learn's handwritten digits (nothing is downloaded);
it takes pixels in `[0, 255]`. `L2PGD` is projected gradient descent under L2: each step
moves along the gradient normalised to unit length, then projects onto ball and box.
-- code --
from signattack.digits import accuracy, load_digits, train_digits_cnn

SMOKE = True  # False: the tutorial's settings
data = load_digits()
model = train_digits_cnn(data, epochs=2 if SMOKE else 4, seed=0)
samples = 40 if SMOKE else 100
x, y = data.x_test[:samples], data.y_test[:samples]
pgd = L2PGD(eps=127.5, steps=10)  # RobustBench's 0.5, in pixels
x_adv = pgd.run(model, x, y).x_adv
lengths = (x_adv - x).flatten(1).norm(dim=1)
print(f"clean accuracy {accuracy(model, x, y):.0%}, under L2PGD {accuracy(model, x_adv, y):.0%}")
print(f"largest ||x_adv - x||_2 = {lengths.max():.2f}")
assert pgd.threat.geometry.within(x_adv, x, 127.5, (0, 255)).all()
-- markdown --
## The standard L2 suite

A number for a paper comes from AutoAttack's suite: `standard_attacks(norm="l2")` runs
APGD-CE, APGD-T, FAB-T and Square under L2, each on the samples the previous ones left
robust. A small budget keeps the notebook fast (the published settings: the defaults of
`standard_attacks`, on the whole test set). `adversarial=` keeps the point that decided each
sample, for the check below.
-- code --
import tempfile
from pathlib import Path

from signattack.evaluation import evaluate, standard_attacks

OUT = Path("out/evaluating_l2")
OUT.mkdir(parents=True, exist_ok=True)
folder = tempfile.TemporaryDirectory()
exported = Path(folder.name) / "adversarial.npz"
suite = standard_attacks(steps=5 if SMOKE else 20, queries=50 if SMOKE else 500, norm="l2")
batches = [(x[: samples // 2], y[: samples // 2]), (x[samples // 2 :], y[samples // 2 :])]
report = evaluate(model, batches, suite, eps=[64, 127.5], adversarial=exported)
report
-- markdown --
Everything in the report is measured in its norm: `max ||d||_2` is the largest Euclidean
length an attack used at each radius (above `eps` would be a broken threat model). The
RobustBench entry converts the radius back to `[0, 1]` units, whatever the box.
-- code --
from IPython.display import Image

entry = report.to_robustbench(eps=127.5)
print(entry["threat_model"], entry["eps"], entry["clean_acc"], entry["robust_acc"])
figure = report.plot(OUT / "accuracy.png")  # also returned, to adjust and save again
Image(filename=OUT / "accuracy.png")
-- markdown --
## The saved points, checked again

`verify` evaluates the model again at the exported points and checks each against its L2
ball and the box, with the same `within` as the attacks.
-- code --
from signattack.evaluation import verify

check = verify(model, exported)
print(check.summary())
assert check.reproduced and check.norm == "l2"
folder.cleanup()
-- markdown --
## Why the projection must be exact

Where the box cuts the ball, *rescale onto the sphere, then clip* lands inside the set but
short of its closest point, and gives away part of the budget. A sample at `(250, 100)`
asked to move by `(60, 80)` with `eps = 50`:
-- code --
import numpy as np
from signattack.core import L2

centre, target, eps = np.array([[250.0, 100.0]]), np.array([[310.0, 180.0]]), 50.0
exact = L2.feasible(centre, eps, 0.0, 255.0).project(target)
step = target - centre
rescaled = centre + np.clip(step * eps / np.linalg.norm(step), 0.0 - centre, 255.0 - centre)
print("exact:", exact[0], "length", L2.distance(exact - centre)[0])
print("rescale, then clip:", rescaled[0], "length", L2.distance(rescaled - centre)[0])""",
)

JAX = Notebook(
    "jax",
    "jax.md",
    "jax_equinox.py",
    "The same attacks and evaluation on an Equinox model, compiled by JAX; no PyTorch. "
    "`SMOKE = True` trains for 2 epochs and attacks with 3 steps; `False` trains for 15 epochs "
    "and attacks with 10 steps at six radii.",
    """-- markdown --
## An Equinox CNN

Trained here with plain JAX on scikit-learn's handwritten digits (nothing is downloaded).
-- code --
import jax.numpy as jnp
import numpy as np
from IPython.display import Markdown
from jax_equinox import correct, timed, train

from signattack import APGD, FGSM, IteratedSign
from signattack.data import digit_arrays

SMOKE = True  # False: the tutorial's settings
x_train, y_train, x_test, y_test = map(jnp.asarray, digit_arrays(seed=0))
model = train(x_train, y_train, epochs=2 if SMOKE else 15, seed=0)
print(f"clean: {correct(model, x_test, y_test)} of {len(y_test)} test digits correct")
if SMOKE:  # attack a quarter of them
    x_test, y_test = x_test[:112], y_test[:112]
-- markdown --
## Attacks on `jax.Array`s

`jax.Array` in, `jax.Array` out. At eps = 32 the iterated attacks should leave at most as many
digits correct as FGSM, and no pixel moves further than eps.
-- code --
steps = 3 if SMOKE else 10
attacks = {
    "FGSM": FGSM(32.0),
    f"IteratedSign({steps} steps)": IteratedSign(32.0, steps),
    f"APGD({steps} steps)": APGD(32.0, steps, seed=0),
}
rows = [f"| attack | correct of {len(y_test)} | largest change |", "|---|---|---|"]
for name, attack in attacks.items():
    x_adv = attack(model, x_test, y_test)
    moved = float(jnp.max(jnp.abs(x_adv - x_test)))
    rows.append(f"| {name} | {correct(model, x_adv, y_test)} | {moved:g} |")
Markdown("\\n".join(rows))
-- markdown --
## Compiled once

The first call compiles the whole attack loop (`jax.jit` over `lax.scan`); later calls reuse it,
also with another eps. The times depend on the machine: compare them with each other.
-- code --
iterated = IteratedSign(16.0, steps)
first, _ = timed(lambda: iterated(model, x_test, y_test))
later = np.median([timed(lambda: iterated(model, x_test, y_test))[0] for _ in range(3)])
other_eps, _ = timed(lambda: iterated.with_eps(8.0)(model, x_test, y_test))
print(f"first call {first:.2f} s, then {later:.3f} s a call; another eps {other_eps:.3f} s")
-- markdown --
## Accuracy against eps

`evaluate` runs on JAX as on PyTorch.
-- code --
from signattack.evaluation import evaluate
from signattack.plots import plot_robustness_curves

batches = [(x_test[i : i + 128], y_test[i : i + 128]) for i in range(0, len(y_test), 128)]
radii = [8.0, 32.0] if SMOKE else [4.0, 8.0, 16.0, 24.0, 32.0, 48.0]
reports = {name: evaluate(model, batches, attack, radii) for name, attack in attacks.items()}
plot_robustness_curves({"Equinox digits CNN": reports})""",
    extra="jax",
    needs=("sklearn", "matplotlib"),  # digit_arrays and the plots
)

NOTEBOOKS_OF_TUTORIALS = (
    DEMO,
    RESNET18,
    CIFAR10_TRAIN,
    CIFAR10_ATTACK,
    BN_SCALE_INVARIANCE,
    MATRIX_FACTORIZATION,
    RNN,
    ROBUSTNESS,
    ADVERSARIAL_TRAINING,
    LOSS_LANDSCAPE,
    GRADIENT_MASKING,
    EVALUATING_L2,
    JAX,
)
"""Every tutorial with an example, in the order of the problem set."""


def _lines(text: str) -> list[str]:
    """A cell's source as nbformat stores it: lines that keep their line ends."""
    lines = text.splitlines(keepends=True)
    if lines:
        lines[-1] = lines[-1].rstrip("\n")
    return lines


def _markdown(text: str) -> dict[str, object]:
    return {"cell_type": "markdown", "metadata": {}, "source": _lines(text)}


def _code(text: str) -> dict[str, object]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": _lines(text),
    }


def _title(page: Path) -> str:
    """The page's title: its first heading (after any front matter)."""
    for line in page.read_text().splitlines():
        if line.startswith("# "):
            return line.removeprefix("# ").strip()
    raise ValueError(f"{page} has no title")


def _cells(body: str) -> list[tuple[str, str]]:
    """The cells of a notebook's ``body`` as ``(kind, text)``: each opened by a ``MARKDOWN``
    or ``CODE`` line."""
    cells: list[tuple[str, str]] = []
    kind, lines = "", []
    for line in [*body.splitlines(), MARKDOWN]:
        if line in (MARKDOWN, CODE):
            if kind:
                text = "\n".join(lines).strip("\n")
                if not text:
                    raise ValueError(f"an empty {kind} cell in {body[:60]!r}")
                cells.append((kind, text))
            kind, lines = line, []
        elif not kind:
            raise ValueError(f"a notebook's body opens with a cell marker, got {line!r}")
        else:
            lines.append(line)
    return cells


def cells_of(body: str) -> list[dict[str, object]]:
    """The cells of a notebook's ``body``: each opened by a ``MARKDOWN`` or ``CODE`` line."""
    return [_markdown(text) if kind == MARKDOWN else _code(text) for kind, text in _cells(body)]


def setup_code(notebook: Notebook) -> str:
    """The first code cell: find the examples (or clone them), install what is missing."""
    uses = "\n".join(
        f"    {json.dumps(module)}: "
        + (f'f"{need}"' if "{root}" in need else json.dumps(need))
        + ","
        for module, need in notebook.uses
    )
    return SETUP.format(repository=REPOSITORY, uses=uses)


def build(notebook: Notebook) -> dict[str, object]:
    """The notebook as nbformat 4 JSON."""
    page = (TUTORIALS / notebook.tutorial).resolve()
    title = _title(page)
    colab = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{notebook.name}.ipynb"
    web_page = page.relative_to(ROOT / "docs").with_suffix("")
    source = f"`examples/{notebook.example}`" if notebook.example else "the library's demo"
    cells = [
        _markdown(
            f"# {title}\n\n"
            f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})\n\n"
            f"The notebook of the tutorial [{title}]({SITE}/{web_page.as_posix()}/), calling the "
            f"library and {source}. {notebook.intro}"
        ),
        _markdown(
            "## Setup\n\n"
            "Where the notebook is opened by itself (Colab), this clones the repository for its "
            "example scripts and installs what the notebook uses; in a clone it does nothing."
        ),
        _code(setup_code(notebook)),
        *cells_of(notebook.body),
    ]
    for index, cell in enumerate(cells):  # stable ids: a regenerated notebook is the same file
        cell["id"] = f"{notebook.name}-{index}"
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def text_of(notebook: Notebook) -> str:
    """The notebook file's text."""
    return json.dumps(build(notebook), indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--check", action="store_true", help="compare instead of writing")
    args = cli.parse_args()
    NOTEBOOKS.mkdir(exist_ok=True)
    stale = []
    for notebook in NOTEBOOKS_OF_TUTORIALS:
        path = NOTEBOOKS / f"{notebook.name}.ipynb"
        text = text_of(notebook)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(
            f"stale notebooks (run python tools/notebooks.py): {', '.join(stale)}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
