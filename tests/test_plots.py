"""The report's figures: bands clipped to the metric's range, every axis labelled,
legends that stay readable with many groups. Checked on the matplotlib artists drawn."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regexp import plots, tasks
from regexp.report import Group, Run


def _group(label: str, accuracies: list[list[float]], **config) -> Group:
    """A group whose runs' (train and validation) accuracy per epoch are ``accuracies``."""
    runs = []
    for seed, acc in enumerate(accuracies):
        acc = np.array(acc)
        history = pd.DataFrame({"epoch": np.arange(1, len(acc) + 1), "accuracy": acc,
                                "val_accuracy": acc - 0.01, "data_loss": 1 - acc,
                                "val_data_loss": 1.02 - acc})  # fmt: skip
        metrics = {"test_accuracy": float(acc[-1]), "test_data_loss": float(1 - acc[-1]),
                   "activity_mean": {"h1": 0.1 + 0.01 * seed}}  # fmt: skip
        run = Run(Path(f"/runs/{label}{seed}"), {"seed": seed, **config}, metrics, history, "{}")
        run.__dict__["activations"] = {"h1": np.linspace(0, 1, 50) * (seed + 1)}
        runs.append(run)
    # a recipe given a reg.lam uses it (its label names it), as report.group_runs finds
    return Group(dict(config), runs, label, {k: v for k, v in config.items() if k == "reg.lam"})


# two runs far apart: mean 0.75, t(0.975, 1) = 12.7, so the band runs from -1.15 to 2.65
WIDE = _group("wide", [[0.6, 0.9, 0.95], [0.5, 0.6, 0.55]], **{"reg.name": "l1", "reg.lam": 0.1})


def _band_ys(ax) -> np.ndarray:
    """The y of every vertex of the bands (fill_between) drawn on ``ax``."""
    return np.concatenate([p.vertices[:, 1] for c in ax.collections for p in c.get_paths()])


def test_the_band_of_two_runs_is_clipped_to_accuracy_s_range(tmp_path):
    values = np.array([[0.6, 0.9, 0.95], [0.5, 0.6, 0.55]])
    half = stats.t.ppf(0.975, 1) * values.std(axis=0, ddof=1) / math.sqrt(2)
    low, high = values.mean(axis=0) - half, values.mean(axis=0) + half
    assert low.min() < -1 and high.max() > 2.5  # unclipped, it would leave [0, 1]
    mean, lo, hi = plots._band(values, "val_accuracy")
    assert mean == pytest.approx(values.mean(axis=0))
    assert lo == pytest.approx(np.clip(low, 0, 1)) and hi == pytest.approx(np.clip(high, 0, 1))

    fig = plots.curve_bands([WIDE], ("accuracy", "val_accuracy"), tmp_path / "a.png", "accuracy")
    ys = _band_ys(fig.axes[0])
    assert ys.min() == 0.0 and ys.max() == 1.0  # reaches the range's ends, never beyond
    assert fig.axes[0].get_ylim()[1] < 1.1  # so the axis shows the curves, not the band

    lam = plots.metric_vs_lambda([WIDE, _group("w2", [[0.7, 0.99], [0.7, 0.5]], **{
        "reg.name": "l1", "reg.lam": 0.01})], "test_accuracy", tmp_path / "l.png")  # fmt: skip
    ys = _band_ys(lam.axes[0])
    assert ys.min() == 0.0 and ys.max() == 1.0


def test_loss_bands_stay_at_or_above_zero(tmp_path):
    fig = plots.curve_bands([WIDE], ("data_loss", "val_data_loss"), tmp_path / "d.png", "loss")
    ys = _band_ys(fig.axes[0])
    assert ys.min() == 0.0 and ys.max() > 1  # a loss has no upper bound


def test_bounds_of_each_metric():
    assert tasks.bounds("test_accuracy") == (0.0, 1.0)
    assert tasks.bounds("val_r2") == (-math.inf, 1.0)
    assert tasks.bounds("mae") == (0.0, math.inf)
    assert tasks.bounds("val_data_loss") == tasks.bounds("loss") == (0.0, math.inf)
    assert tasks.bounds("gap") == (-math.inf, math.inf)


def test_every_figure_labels_both_axes(tmp_path):
    groups = [WIDE, _group("none", [[0.7, 0.8], [0.72, 0.81]], **{"reg.name": "none",
                                                                 "reg.rho": 0.05})]  # fmt: skip
    for g in groups:
        for r in g.runs:
            r.config["reg.rho"] = g.config.get("reg.rho", 0.1)
            g.config["reg.rho"] = r.config["reg.rho"]
    history = groups[0].runs[0].history.assign(loss=0.5, val_loss=0.6)
    figures = [
        plots.curves(history, tmp_path / "c.png", "accuracy", "run"),
        plots.activations({"h1": np.ones((4, 3)), "h2": np.zeros((4, 3))}, tmp_path / "h.png", "t"),
        plots.scatter(np.eye(2), np.array([0, 1]), tmp_path / "s.png", "data"),
        plots.curve_bands(groups, ("data_loss", "val_data_loss"), tmp_path / "b.png", "loss"),
        plots.side_by_side(
            [("a", groups[:1]), ("b", groups[1:])],
            ("accuracy", "val_accuracy"),
            tmp_path / "p.png",
            "accuracy",
        ),  # fmt: skip
        plots.metric_vs_lambda(groups, "test_accuracy", tmp_path / "l.png"),
        plots.activation_histograms(groups, tmp_path / "ah.png"),
        plots.kl_mean_vs_rho(groups, tmp_path / "k.png"),
        plots.pooled_histogram(np.linspace(0, 1, 20), 0.05, tmp_path / "ph.png", "pooled"),
    ]
    for fig in figures:
        for i, ax in enumerate(fig.axes):
            assert ax.get_xlabel(), (fig, ax.get_title())
            shared = i > 0 and ax.get_shared_y_axes().joined(ax, fig.axes[0])
            assert ax.get_ylabel() or shared or i > 0 and fig.axes[0].get_ylabel(), fig


def test_a_legend_of_many_groups_stays_readable(tmp_path):
    groups = [_group(f"l1_activity reg.lam={i / 1000} reg.hidden.dropout.rate=0.{i % 9}",
                     [[0.7, 0.8], [0.72, 0.81]]) for i in range(40)]  # fmt: skip
    fig = plots.curve_bands(groups, ("accuracy", "val_accuracy"), tmp_path / "a.png", "acc")
    legend = fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == plots.LEGEND_MAX
    # 27 groups, the note, and the line styles
    assert texts[-3:] == ["... and 13 more (see the tables)", "train", "validation"]
    assert all(len(line) <= 32 for t in texts for line in t.splitlines())
    assert legend._ncols == 2 and legend.get_texts()[0].get_fontsize() == 6
    # outside the axes, to their right, and inside the saved picture
    assert legend.get_window_extent().x0 >= fig.axes[0].get_window_extent().x1
    from PIL import Image

    assert Image.open(tmp_path / "a.png").width > fig.get_figwidth() * fig.dpi  # grown to hold it


# --- a run's figures: reused from run to run, and what plain matplotlib would draw ------


def _history(n: int, scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """A run's history.csv: every series ``plots.curves`` draws, ``n`` epochs."""
    rng = np.random.default_rng(seed)
    walk = lambda start: start + scale * np.cumsum(rng.normal(0, 0.02, n))  # noqa: E731
    return pd.DataFrame({"epoch": np.arange(1, n + 1), "loss": walk(0.7), "val_loss": walk(0.8),
                         "data_loss": walk(0.6), "val_data_loss": walk(0.7),
                         "accuracy": walk(0.6), "val_accuracy": walk(0.55),
                         "mae": walk(3.0), "val_mae": walk(3.2),
                         "r2": walk(-0.4), "val_r2": walk(-0.5)})  # fmt: skip


SERIES = {"loss": ["loss", "val_loss", "data_loss", "val_data_loss"],
          "accuracy": ["accuracy", "val_accuracy"], "mae": ["mae", "val_mae"],
          "r2": ["r2", "val_r2"]}  # fmt: skip


def _reference_curves(history: pd.DataFrame, metric: str, title: str):
    """The curves figure as plain matplotlib draws it, laying out everything anew on
    each draw: what ``plots.curves`` must look like."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plots._figure(6, 4)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = [f"train {metric}", f"validation {metric}", "train data loss", "val data loss"]
    styles = [("tab:blue", "-"), ("tab:red", "-"), ("tab:blue", "--"), ("tab:red", "--")]
    for name, label, (c, ls) in zip(SERIES[metric], labels, styles, strict=False):
        ax.plot(history["epoch"], history[name], c=c, ls=ls, label=label)
    ax.set(xlabel="epoch", ylabel=metric, title=title)
    ax.legend(loc="lower right" if tasks.direction(metric) == "max" else "upper right")
    fig.canvas.draw()
    return fig


def _extent(text, fig) -> np.ndarray:
    return np.array(text.get_window_extent(fig.canvas.get_renderer()).extents)


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(float)


def _blocks(image: np.ndarray, k: int = 8) -> np.ndarray:
    """Means of k x k blocks: text a pixel off vanishes, a missing line or label stays."""
    h, w = image.shape[0] // k * k, image.shape[1] // k * k
    return image[:h, :w].reshape(h // k, k, w // k, k, -1).mean(axis=(1, 3))


def _ink(image: np.ndarray) -> tuple:
    """The box (x0, y0, x1, y1) of the dark pixels of an RGB(A) image."""
    ys, xs = np.nonzero(image[..., 0] < 160)
    return xs.min(), ys.min(), xs.max(), ys.max()


@pytest.mark.parametrize("metric", ["loss", "accuracy", "mae", "r2"])
def test_curves_draw_every_series_of_the_history_and_are_laid_out_as_matplotlib_does(
    tmp_path, metric
):
    # three runs on the one reused figure: the limits, the tick labels and the y label's
    # place must follow each run's data, whose tick labels ("0.65", "−150", "1500" and
    # the like) are wider or narrower than the last run's
    runs = [_history(30, scale=0.5, seed=1), _history(200, scale=300.0, seed=2),
            _history(120, scale=4000.0, seed=3)]  # fmt: skip
    for i, history in enumerate(runs):
        title = f"run {i}: {metric}"
        fig = plots.curves(history, tmp_path / f"c{i}.png", metric, title)
        ax = fig.axes[0]
        lines = [line for line in ax.get_lines() if line.get_visible()]
        assert len(lines) == len(SERIES[metric])  # nothing of an earlier run is left
        for line, name in zip(lines, SERIES[metric], strict=True):
            assert np.asarray(line.get_xdata()) == pytest.approx(history["epoch"].to_numpy())
            assert np.asarray(line.get_ydata()) == pytest.approx(history[name].to_numpy())
        values = history[SERIES[metric]].to_numpy()
        low, high, n = values.min(), values.max(), len(history)
        margin = 0.05 * (high - low)  # matplotlib's autoscale: the data, 5 % either side
        assert ax.get_ylim() == pytest.approx((low - margin, high + margin))
        assert ax.get_xlim() == pytest.approx((1 - 0.05 * (n - 1), n + 0.05 * (n - 1)))
        assert ax.get_title() == title
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", metric)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[:2] == [f"train {metric}", f"validation {metric}"]
        assert len(legend) == len(SERIES[metric])

        # where plain matplotlib puts the title, the labels and the tick labels
        ref = _reference_curves(history, metric, title)
        rax = ref.axes[0]
        assert ax.get_ylim() == pytest.approx(rax.get_ylim())
        for mine, theirs in [(ax.title, rax.title), (ax.xaxis.label, rax.xaxis.label),
                             (ax.yaxis.label, rax.yaxis.label)]:  # fmt: skip
            assert _extent(mine, fig) == pytest.approx(_extent(theirs, ref), abs=1.0), mine
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        assert ticks == [t.get_text() for t in rax.get_yticklabels()]
        shown = [t for t, y in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
                 if low - margin <= y <= high + margin]  # fmt: skip
        assert _extent(ax.yaxis.label, fig)[2] < min(_extent(t, fig)[0] for t in shown)

    # and the last picture: the same, but for text placed on whole pixels
    ref.savefig(tmp_path / "ref.png")
    mine, theirs = _png(tmp_path / "c2.png"), _png(tmp_path / "ref.png")
    assert mine.shape == theirs.shape
    assert np.abs(mine - theirs).mean() < 3
    assert np.abs(_blocks(mine) - _blocks(theirs)).max() < 40


def test_the_curves_picture_shows_its_legend_over_the_curves(tmp_path):
    """The legend, drawn once and laid over as pixels, is in the picture where plain
    matplotlib draws it, and a curve behind it shows through its frame as it did."""
    history = _history(50)
    history["val_loss"] = 0.79  # a line through the legend's box
    plots.curves(history, tmp_path / "c.png", "loss", "run")
    ref = _reference_curves(history, "loss", "run")
    ref.savefig(tmp_path / "ref.png")
    box = ref.axes[0].get_legend().get_window_extent()
    rows = slice(int(ref.bbox.height - box.y1), int(ref.bbox.height - box.y0))
    cols = slice(int(box.x0), int(box.x1))
    mine, theirs = _png(tmp_path / "c.png")[rows, cols], _png(tmp_path / "ref.png")[rows, cols]
    assert (mine < 128).sum() > 300  # its texts and handles are there
    assert np.abs(np.subtract(_ink(mine), _ink(theirs))).max() <= 1
    assert np.abs(_blocks(mine) - _blocks(theirs)).max() < 40
    pink = lambda image: (image[..., 0] - image[..., 1] > 20).sum(axis=1) > 80  # noqa: E731
    assert pink(theirs).any() and np.array_equal(pink(mine), pink(theirs))  # the red line


def _reference_activations(acts: dict, title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    width = max(5.0, 3.2 * len(acts))
    fig = plots._figure(width, 3.4, left=1.2 / width, wspace=0.4, bottom=0.16, top=0.8)
    FigureCanvasAgg(fig)
    for ax, (name, a) in zip(fig.subplots(1, len(acts), squeeze=False)[0], acts.items(),
                             strict=True):  # fmt: skip
        counts, edges = np.histogram(a.ravel(), bins=50)
        ax.stairs(counts, edges, fill=True, color="tab:gray")
        ax.text(0.95, 0.95, f"mean {a.mean():.4f}", transform=ax.transAxes, ha="right",
                va="top")  # fmt: skip
        ax.set(title=name, xlabel="activation value", ylabel="count")
    fig.suptitle(title)
    fig.canvas.draw()
    return fig


def test_activations_draw_each_layer_s_histogram_and_mean_anew_on_the_reused_figure(tmp_path):
    rng = np.random.default_rng(0)
    wide = {"h1": rng.exponential(2.0, (400, 32)), "h2": rng.normal(-50, 30, (400, 16))}
    narrow = {"h3": rng.exponential(0.01, (20, 4)), "h4": rng.uniform(0.2, 0.3, (20, 8))}
    plots.activations(wide, tmp_path / "wide.png", "first")
    fig = plots.activations(narrow, tmp_path / "a.png", "second: activations on test")
    assert fig.texts[0].get_text() == "second: activations on test"  # the suptitle
    ref = _reference_activations(narrow, "second: activations on test")
    for ax, rax, (name, a) in zip(fig.axes, ref.axes, narrow.items(), strict=True):
        counts, edges = np.histogram(a.ravel(), bins=50)
        (bars,) = [p for p in ax.patches if p.get_visible()]
        drawn = bars.get_data()
        assert np.array_equal(drawn.values, counts) and np.array_equal(drawn.edges, edges)
        notes = [t.get_text() for t in ax.texts]
        assert notes == [f"mean {a.mean():.4f}"]
        assert float(notes[0].split()[1]) == pytest.approx(a.mean(), abs=5e-5)
        assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (name, "activation value",
                                                                      "count")  # fmt: skip
        # the limits are the new histogram's, as relim and autoscale would set them
        span = edges[-1] - edges[0]
        assert ax.get_xlim() == pytest.approx((edges[0] - 0.05 * span, edges[-1] + 0.05 * span))
        assert ax.get_ylim() == pytest.approx((0, 1.05 * counts.max()))
        assert ax.get_xlim() == pytest.approx(rax.get_xlim())
        assert ax.get_ylim() == pytest.approx(rax.get_ylim())
        for mine, theirs in [(ax.title, rax.title), (ax.xaxis.label, rax.xaxis.label),
                             (ax.yaxis.label, rax.yaxis.label)]:  # fmt: skip
            assert _extent(mine, fig) == pytest.approx(_extent(theirs, ref), abs=1.0)
        assert _extent(ax.texts[0], fig) == pytest.approx(_extent(rax.texts[0], ref), abs=1.0)
    ref.savefig(tmp_path / "ref.png")
    mine, theirs = _png(tmp_path / "a.png"), _png(tmp_path / "ref.png")
    assert np.abs(mine - theirs).mean() < 3
    assert np.abs(_blocks(mine) - _blocks(theirs)).max() < 40


def test_cached_text_lands_where_matplotlib_draws_it(tmp_path):
    """The renderer's bitmaps of texts (level and turned a quarter, as y labels are)
    stand within a pixel of matplotlib's own glyph-by-glyph drawing, on first draw and
    from the cache."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def draw(canvas, text: str, angle: int, x: float) -> tuple:
        fig = Figure(figsize=(3, 3), dpi=90)
        fig.text(x, x, text, rotation=angle, rotation_mode="anchor", fontsize=11)
        canvas(fig).draw()
        return _ink(np.asarray(fig.canvas.buffer_rgba()))

    for text in ("count", "jgq", "0.25", "−1500", "validation loss"):
        for angle in (0, 90):
            for x in (0.5, 0.5013, 0.5031):
                theirs = draw(FigureCanvasAgg, text, angle, x)
                for _ in range(2):  # drawn, then from the cache
                    mine = draw(plots._canvas(), text, angle, x)
                    assert np.abs(np.subtract(mine, theirs)).max() <= 1, (text, angle, x)


def test_png_holds_the_canvas_pixels(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    opaque = rgba.copy()
    opaque[..., 3] = 255
    plots._png(opaque, tmp_path / "o.png", 90)
    plots._png(rgba, tmp_path / "t.png", 90)
    with Image.open(tmp_path / "o.png") as o, Image.open(tmp_path / "t.png") as t:
        assert o.mode == "RGB" and np.array_equal(np.asarray(o), opaque[..., :3])
        assert t.mode == "RGBA" and np.array_equal(np.asarray(t), rgba)
        assert o.info["dpi"] == pytest.approx((90, 90), abs=0.01)
    fig = plots.curves(_history(20), tmp_path / "c.png", "loss", "run")
    with Image.open(tmp_path / "c.png") as c:
        assert np.array_equal(np.asarray(c), np.asarray(fig.canvas.buffer_rgba())[..., :3])


def test_the_same_scatter_is_drawn_once_then_copied(tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    fig = plots.scatter(x, y, tmp_path / "a.png", "once")
    assert fig is not None
    (dots,) = fig.axes[0].collections
    assert np.array_equal(dots.get_offsets(), x)
    assert plots.scatter(x, y, tmp_path / "b.png", "once") is None
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert plots.scatter(x[::-1], y, tmp_path / "c.png", "once") is not None  # other data


def test_a_warmed_up_process_draws_the_same_bytes(tmp_path):
    """A writer process draws throwaway figures of each kind a run will draw
    (``plots.warm_up``: at start, and while the run trains); the run's own figures it
    then draws are byte for byte the ones a fresh process draws."""
    import subprocess
    import sys

    history = tmp_path / "history.csv"
    epochs = np.arange(1, 31)
    pd.DataFrame({"epoch": epochs, "loss": 1 / epochs, "val_loss": 1.2 / epochs,
                  "data_loss": 0.9 / epochs, "val_data_loss": 1.1 / epochs,
                  "accuracy": 1 - 0.5 / epochs, "val_accuracy": 1 - 0.6 / epochs}).to_csv(
        history, index=False)  # fmt: skip
    code = (
        "import sys, numpy as np, pandas as pd\nfrom regexp import plots\n"
        "if sys.argv[2] == 'warm': plots.warm_up(('loss', 'accuracy'), 2)\n"
        "frame, out = pd.read_csv(sys.argv[1]), sys.argv[3]\n"
        "plots.curves(frame, out + '-loss.png', 'loss', 'a run: loss')\n"
        "plots.curves(frame, out + '-accuracy.png', 'accuracy', 'a run: accuracy')\n"
        "rng = np.random.default_rng(0)\n"
        "acts = {'h1': rng.gamma(2.0, size=(75, 8)), 'h2': rng.gamma(1.0, size=(75, 8))}\n"
        "plots.activations(acts, out + '-activations.png', 'a run: activations on test')\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    for how in ("cold", "warm"):
        subprocess.run([sys.executable, "-c", code, str(history), how,
                        str(tmp_path / how)], check=True, cwd=root)  # fmt: skip
    for figure in ("loss", "accuracy", "activations"):
        cold = (tmp_path / f"cold-{figure}.png").read_bytes()
        warm = (tmp_path / f"warm-{figure}.png").read_bytes()
        assert cold[:8] == b"\x89PNG\r\n\x1a\n" and len(cold) > 1000
        assert warm == cold, figure
