"""The figures of one run, written as PNG (never shown).

A sweep writes hundreds of these, so a run's figures cost what its training does unless
they are cheap. Each figure is built once per process and reused: a new run only swaps
in its data (``set_data``), rescales and saves. What stays is not measured or laid out
again: titles sit at a fixed place above their axes (no top ticks to clear), axis
labels where matplotlib first put them, the y label moved by how much wider or narrower
the new tick labels are (``_Labels``); the canvas keeps its renderer, which keeps every
text's measure and bitmap (``_canvas``); the PNG is written unfiltered at zlib level 1
(``_png``); a legend, the same on every run, is drawn once and laid over as pixels
(``_snapshot``). Histograms are one ``stairs`` artist, and the data scatter, identical
for every run on the same split, is drawn once and copied.

Every axis is labelled. A report figure's confidence band is clipped to its metric's
range (``tasks.bounds``: accuracy in [0, 1], R² <= 1, losses and MAE >= 0), and its
legend stands outside the axes, to the right, with one entry per group (``_legend``).
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from regexp.tasks import bounds, direction

PNG = {"compress_level": 1}  # fast to write; a few KB larger
DPI = 90
TEXT_CACHE = 4096  # texts whose measure and bitmap a renderer keeps (then it starts over)
_figures: dict[tuple, tuple] = {}
_scatters: dict[str, Path] = {}
_canvas_type = None


def _figure(width: float, height: float, **margins):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(**{"left": 0.12, "right": 0.97, "bottom": 0.13, "top": 0.9, **margins})
    return fig


def _run_figure(width: float, height: float, **margins):
    """A figure drawn on the caching canvas (``_canvas``) and saved with ``_write``."""
    fig = _figure(width, height, **margins)
    _canvas()(fig)
    return fig


def _canvas():
    """The Agg canvas class of the run figures: its renderer outlives a draw (the stock
    ``savefig`` of a canvas-less figure makes a new one each time) and remembers, for
    every text it met (string, font, size), its measure, its font's line height and its
    bitmap, so a tick label seen in an earlier run is neither laid out nor rasterized
    again. Text lands on whole pixels, as matplotlib drew it before 3.11. Built on first
    use: importing this module does not import matplotlib."""
    global _canvas_type
    if _canvas_type is None:
        _canvas_type = _make_canvas()
    return _canvas_type


def _make_canvas():
    from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
    from matplotlib.font_manager import fontManager, get_font

    def font_key(prop) -> tuple:
        return (tuple(prop.get_family()), prop.get_style(), prop.get_variant(),
                prop.get_weight(), prop.get_stretch(), prop.get_size_in_points(),
                prop.get_file(), prop.get_math_fontfamily())  # fmt: skip

    def remember(cache: dict, key, value):
        if len(cache) >= TEXT_CACHE:
            cache.clear()
        cache[key] = value
        return value

    class Renderer(RendererAgg):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._bitmaps: dict = {}
            self._measures: dict = {}
            self._heights: dict = {}

        def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
            plain = not ismath and angle in (0, 90) and (mtext is None or not _shaped(mtext))
            if not plain:
                return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            key = (s, font_key(prop), gc.get_antialiased(), angle)
            done = self._bitmaps.get(key)
            if done is None:
                font = self._prepare_font(prop)
                font.set_text(s, 0, flags=get_hinting_flag())
                font.draw_glyphs_to_bitmap(antialiased=gc.get_antialiased())
                xo, yo = font.get_bitmap_offset()
                bitmap = np.array(font.get_image())
                # the bitmap's corner from the pen (x right, y down): left, bottom
                left, bottom = xo / 64, yo / 64 + font.get_descent() / 64 + 1
                if angle == 90:  # a quarter turn anticlockwise, of the bitmap and its corner
                    left, bottom = bottom - bitmap.shape[0], -left
                    bitmap = np.ascontiguousarray(np.rot90(bitmap))
                done = remember(self._bitmaps, key, (bitmap, left, bottom))
            bitmap, left, bottom = done
            self._renderer.draw_text_image(bitmap, round(x + left), round(y + bottom), 0, gc)

        def get_text_width_height_descent(self, s, prop, ismath):
            if ismath:
                return super().get_text_width_height_descent(s, prop, ismath)
            key = (s, font_key(prop))
            done = self._measures.get(key)
            if done is None:
                done = remember(self._measures, key,
                                super().get_text_width_height_descent(s, prop, ismath))  # fmt: skip
            return done

        def _get_font_height_metrics(self, prop):
            """A font's ascent, descent and line gap, what ``Text._get_layout`` (3.11)
            reads from the font's tables on every layout unless the renderer says."""
            key = font_key(prop)
            done = self._heights.get(key)
            if done is None:
                font = get_font(fontManager._find_fonts_by_props(prop))
                done = (None, None, None)
                for table, gap, ascent, descent in (
                    ("OS/2", "sTypoLineGap", "sTypoAscender", "sTypoDescender"),
                    ("hhea", "lineGap", "ascent", "descent"),
                ):
                    values = font.get_sfnt_table(table)
                    if values is not None:
                        em = font.get_sfnt_table("head")["unitsPerEm"]
                        scale = prop.get_size_in_points() * self.dpi / 72 / em
                        done = (values[ascent] * scale, -values[descent] * scale,
                                values[gap] * scale)  # fmt: skip
                        break
                remember(self._heights, key, done)
            return done

    class Canvas(FigureCanvasAgg):
        _size = None

        def get_renderer(self):
            w, h = self.get_width_height(physical=True)
            if self._size != (w, h, self.figure.dpi):
                self.renderer = Renderer(w, h, self.figure.dpi)
                self._size = (w, h, self.figure.dpi)
            return self.renderer

    return Canvas


def _shaped(text) -> bool:
    """Whether a Text asks for font features or a language (3.11), which the cached
    bitmaps do not carry."""
    features = getattr(text, "get_fontfeatures", lambda: None)()
    language = getattr(text, "get_language", lambda: None)()
    return bool(features) or language is not None


def _write(fig, out: Path) -> None:
    """Draw ``fig`` on its canvas and write it to ``out`` as PNG (``_png``)."""
    fig.canvas.draw()
    _png(np.asarray(fig.canvas.buffer_rgba()), out, fig.dpi)


def _png(rgba: np.ndarray, out: Path, dpi: float) -> None:
    """An RGBA image as PNG: RGB when every pixel is opaque, rows unfiltered, zlib level
    1, ``dpi`` recorded. Pillow's encoder, trying five filters on every row, took 5 to 11
    ms a figure; this takes 2 to 4 and the files are smaller (a figure is mostly flat
    colour, which unfiltered rows compress as well)."""
    from matplotlib import __version__

    height, width = rgba.shape[:2]
    opaque = bool((rgba[..., 3] == 255).all())
    channels = 3 if opaque else 4
    rows = np.empty((height, 1 + width * channels), np.uint8)
    rows[:, 0] = 0  # each row's filter: none
    pixels = rows[:, 1:].reshape(height, width, channels)
    for c in range(channels):  # a channel at a time: 10 times faster than at once
        pixels[..., c] = rgba[..., c]

    def chunk(kind: bytes, data: bytes) -> bytes:
        check = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + check

    per_metre = round(dpi / 0.0254)
    Path(out).write_bytes(b"".join([
        b"\x89PNG\r\n\x1a\n",
        chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2 if opaque else 6, 0, 0, 0)),
        chunk(b"tEXt", f"Software\0Matplotlib version{__version__}, https://matplotlib.org/".encode()),
        chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)),
        chunk(b"IDAT", zlib.compress(rows, 1)),
        chunk(b"IEND", b""),
    ]))  # fmt: skip


class _Labels:
    """An axes' axis labels, placed once by matplotlib and then kept where it put them,
    the y label moved left or right by how much wider or narrower the widest y tick
    label now is: what matplotlib's own placement does, which measures every tick label
    of both axes twice on every draw. The x label stays: tick labels are one line, so
    their height does not change. Needs one draw of the figure first (``_freeze``)."""

    def __init__(self, ax):
        from matplotlib.transforms import IdentityTransform, blended_transform_factory

        self.ax = ax
        self.font = ax.yaxis.get_major_ticks()[0].label1.get_fontproperties().copy()
        x, y = ax.xaxis.label.get_position()  # axes x, pixels y
        ax.xaxis.set_label_coords(x, y, blended_transform_factory(ax.transAxes,
                                                                  IdentityTransform()))  # fmt: skip
        self.x, y = ax.yaxis.label.get_position()  # pixels x, axes y
        self.width = self.widest()
        self.transform = blended_transform_factory(IdentityTransform(), ax.transAxes)
        ax.yaxis.set_label_coords(self.x, y, self.transform)

    def widest(self) -> float:
        """The width (pixels) of the widest y tick label within the view, as the next
        draw will label the ticks."""
        axis = self.ax.yaxis
        low, high = sorted(axis.get_view_interval())
        locs = axis.get_majorticklocs()
        labels = axis.get_major_formatter().format_ticks(locs)  # all, as the draw does
        slack = 1e-10 * (high - low)  # which ticks the draw keeps (linear axes)
        measure = self.ax.figure.canvas.get_renderer().get_text_width_height_descent
        widths = [measure(s, self.font, False)[0] for loc, s in zip(locs, labels, strict=True)
                  if s and low - slack <= loc <= high + slack]  # fmt: skip
        return max(widths, default=0.0)

    def place(self) -> None:
        """The y label beside the tick labels of the current limits."""
        y = self.ax.yaxis.label.get_position()[1]
        self.ax.yaxis.set_label_coords(self.x - (self.widest() - self.width), y, self.transform)


def _freeze(fig, axes) -> list[_Labels]:
    """Draw ``fig`` once, then keep its titles and axis labels where they were put."""
    fig.canvas.draw()
    for ax in axes:
        ax.set_title(ax.get_title(), y=1.0)  # where it is with nothing on top of the axes
    return [_Labels(ax) for ax in axes]


def _snapshot(fig, artist) -> None:
    """Replace ``artist`` (a legend: the same on every run, where it is) by its pixels:
    drawn once alone on the transparent canvas, then laid over the axes as an image at
    each draw, where it was, above the same artists. Laying a picture over the curves
    blends them as drawing it over them did (its frame lets them through, faintly)."""
    from matplotlib.artist import Artist

    shown = [a for a in (fig.patch, *fig.get_children(), *artist.axes.get_children())
             if a is not artist and a is not artist.axes and a.get_visible()]  # fmt: skip
    for a in shown:
        a.set_visible(False)
    fig.canvas.draw()
    box = artist.get_window_extent().padded(2)
    height = fig.canvas.get_renderer().height
    x0, y0 = int(np.floor(box.x0)), int(np.floor(box.y0))
    x1, y1 = int(np.ceil(box.x1)), int(np.ceil(box.y1))
    rows = np.asarray(fig.canvas.buffer_rgba())[int(height) - y1 : int(height) - y0, x0:x1]
    rgba = np.ascontiguousarray(rows[::-1])  # draw_image's first row is the bottom one
    for a in shown:
        a.set_visible(True)
    artist.set_visible(False)

    class Pixels(Artist):
        def draw(self, renderer):
            if not self.get_visible():
                return
            gc = renderer.new_gc()
            renderer.draw_image(gc, x0, y0, rgba)
            gc.restore()

    pixels = Pixels()
    pixels.set_zorder(artist.get_zorder())
    artist.axes.add_artist(pixels)


def warm_up(metrics: tuple[str, ...] = ("loss",), layers: int = 0) -> None:
    """Draw throwaway figures of the kinds a run will draw (its ``metrics``' curves, its
    activations' histograms of ``layers`` layers), so that its own figures do not pay for loading
    fonts and building them (0.3 s for the first, 0.1 s for each other kind). A writer
    process does it while the launching process imports TensorFlow and trains; what it
    writes afterwards is byte for byte what it would have written."""
    import os

    epochs = [1.0, 2.0, 3.0]
    history = pd.DataFrame({"epoch": epochs, **{
        f"{prefix}{name}": [0.9, 0.5, 0.3]
        for name in {*metrics, "loss", "data_loss"} for prefix in ("", "val_")}})  # fmt: skip
    for metric in metrics:
        curves(history, Path(os.devnull), metric, f"warming up: {metric}")
    if layers:
        values = np.linspace(0.0, 1.0, 12).reshape(3, 4)
        shown = {f"h{i}": values for i in range(1, layers + 1)}
        activations(shown, Path(os.devnull), "warming up: activations")


def _curves_figure(metric: str) -> tuple:
    fig = _run_figure(6, 4)
    ax = fig.add_subplot()
    styles = [("tab:blue", "-", f"train {metric}"), ("tab:red", "-", f"validation {metric}")]
    if metric == "loss":
        styles += [("tab:blue", "--", "train data loss"), ("tab:red", "--", "val data loss")]
    lines = [ax.plot([], [], c=c, ls=ls, label=label)[0] for c, ls, label in styles]
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    rising = direction(metric) == "max"  # accuracy, r2: the legend out of their way
    legend = ax.legend(loc="lower right" if rising else "upper right")
    (labels,) = _freeze(fig, [ax])
    _snapshot(fig, legend)
    return fig, ax, lines, labels


def curves(history: pd.DataFrame, out: Path, metric: str, title: str):
    """Train and validation ``metric`` per epoch; for losses, the data loss dashed.
    Returns the figure (reused by the next call)."""
    key = ("curves", metric)
    if key not in _figures:
        _figures[key] = _curves_figure(metric)
    fig, ax, lines, labels = _figures[key]
    series = [metric, f"val_{metric}"]
    if metric == "loss":
        series += ["data_loss", "val_data_loss"]
    epochs = history["epoch"].to_numpy(float)
    for line, name in zip(lines, series, strict=True):
        line.set_data(epochs, history[name].to_numpy(float))
    ax.relim()
    ax.autoscale_view()
    ax.title.set_text(title)
    labels.place()
    _write(fig, out)
    return fig


def _activations_figure(n: int) -> tuple:
    width = max(5.0, 3.2 * n)
    fig = _run_figure(width, 3.4, left=1.2 / width, wspace=0.4, bottom=0.16, top=0.8)
    axes = fig.subplots(1, n, squeeze=False)[0]
    bars = [ax.stairs([0.0], [0.0, 1.0], fill=True, color="tab:gray") for ax in axes]
    notes = [ax.text(0.95, 0.95, "", transform=ax.transAxes, ha="right", va="top") for ax in axes]
    for ax in axes:
        ax.set_xlabel("activation value")
        ax.set_ylabel("count")
    suptitle = fig.suptitle(" ")
    labels = _freeze(fig, axes)
    return fig, axes, bars, notes, suptitle, labels


def activations(acts: dict[str, np.ndarray], out: Path, title: str):
    """One histogram per activity-regularized layer, its mean written on it. Returns the
    figure (reused by the next call)."""
    key = ("activations", len(acts))
    if key not in _figures:
        _figures[key] = _activations_figure(len(acts))
    fig, axes, bars, notes, suptitle, labels = _figures[key]
    for ax, bar, note, placed, (name, a) in zip(axes, bars, notes, labels, acts.items(),
                                                strict=True):  # fmt: skip
        values = a.ravel()
        counts, edges = np.histogram(values, bins=50)
        bar.set_data(values=counts, edges=edges)
        note.set_text(f"mean {values.mean():.4f}")
        ax.title.set_text(name)
        # the stairs' extent, as relim would find it walking their path, but at once
        ax.dataLim.set_points(np.array([[edges[0], 0.0], [edges[-1], counts.max()]], float))
        ax.autoscale_view()
        placed.place()
    suptitle.set_text(title)
    _write(fig, out)
    return fig


def scatter(x: np.ndarray, labels: np.ndarray, out: Path, title: str):
    """The data coloured by class (2-D datasets). Returns the figure, or None when the
    same picture was drawn before and is copied."""
    digest = hashlib.sha1(x.tobytes() + labels.tobytes() + title.encode()).hexdigest()
    done = _scatters.get(digest)
    if done is not None and done.is_file():
        if done.resolve() != Path(out).resolve():  # a folder written again holds it already
            shutil.copyfile(done, out)
        return None
    fig = _run_figure(5, 5, left=0.16)  # room for the y label beside "−0.6" and the like
    ax = fig.add_subplot()
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="coolwarm", s=40, alpha=0.5)
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    ax.set_title(title)
    _write(fig, out)
    _scatters[digest] = Path(out)
    return fig


# --- report figures: groups of runs, means with 95 % t bands ----------------------


def _band(values: np.ndarray, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95 % t interval along axis 0 (runs), the interval clipped to ``column``'s
    range (``tasks.bounds``); no band for a single run."""
    from scipy import stats

    mean = values.mean(axis=0)
    if len(values) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(axis=0, ddof=1) / np.sqrt(len(values))
    return mean, *_clip(mean - half, mean + half, column)


def _clip(low, high, column: str) -> tuple[np.ndarray, np.ndarray]:
    """An interval's ends clipped to ``column``'s range: accuracy to [0, 1], ..."""
    lo, hi = bounds(column)
    return np.clip(np.asarray(low, float), lo, hi), np.clip(np.asarray(high, float), lo, hi)


def _save(fig, out: Path) -> None:
    fig.savefig(out, pil_kwargs=PNG)


def _save_fitted(fig, out: Path) -> None:
    """Saved with the canvas grown or cropped to what is drawn: a legend outside the axes."""
    fig.savefig(out, pil_kwargs=PNG, bbox_inches="tight", pad_inches=0.1)


LEGEND_MAX = 30  # entries a legend lists; a note counts the others


def _legend(where, entries: list, styles: list = (), title: str | None = None, **anchor):
    """A legend beside the axes ``where``, to its right, readable with many groups:
    ``entries`` (handle, label), one per group, then ``styles`` (train solid, validation
    dashed); labels wrapped at 32 characters, a smaller font and two columns as entries
    grow, and at most ``LEGEND_MAX`` entries: past that, "... and k more (see the tables)"
    stands for the groups left out."""
    from matplotlib.lines import Line2D

    entries, styles = list(entries), list(styles)
    room = LEGEND_MAX - len(styles)
    if len(entries) > room:
        rest = len(entries) - (room - 1)
        entries = [
            *entries[: room - 1],
            (Line2D([], [], ls="none"), f"... and {rest} more (see the tables)"),
        ]
    entries += styles
    n = len(entries)
    size = 8 if n <= 10 else 7 if n <= 20 else 6
    handles = [h for h, _ in entries]
    labels = [textwrap.fill(str(label), 32, subsequent_indent="  ") for _, label in entries]
    place = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), **anchor}
    return where.legend(handles, labels, fontsize=size, ncol=1 if n <= 16 else 2,
                        title=title, title_fontsize=size, frameon=False, **place)  # fmt: skip


def curve_bands(groups, columns: tuple[str, str], out: Path, ylabel: str):
    """Train (solid) and validation (dashed) curves per group, mean with 95 % band
    (clipped to the series' range); returns the figure."""
    fig = _figure(7.5, 4.5, left=0.1, right=0.97)
    ax = fig.add_subplot()
    _legend(ax, *_draw_bands(ax, groups, columns, ylabel))
    _save_fitted(fig, out)
    return fig


def side_by_side(panels: list, columns: tuple[str, str], out: Path, ylabel: str):
    """One panel per (title, groups), sharing the y axis: e.g. baseline | regularized;
    each panel's legend below it. Returns the figure."""
    fig = _figure(5 * len(panels), 4, left=0.07, right=0.98, wspace=0.15)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (title, groups) in zip(axes, panels, strict=True):
        entries, styles = _draw_bands(ax, groups, columns, ylabel)
        ax.set_title(title)
        _legend(ax, entries, styles, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    _save_fitted(fig, out)
    return fig


def _draw_bands(ax, groups, columns: tuple[str, str], ylabel: str) -> tuple[list, list]:
    """Each group's mean curves and clipped 95 % bands; the legend's entries (handle,
    label), one colour per group, and its two line styles."""
    from matplotlib.lines import Line2D

    entries = []
    for g, color in zip(groups, _colors(len(groups)), strict=True):
        length = min(len(r.history) for r in g.runs)
        epochs = np.arange(1, length + 1)
        for column, style in zip(columns, ("-", "--"), strict=True):
            values = np.stack([r.history[column].to_numpy()[:length] for r in g.runs])
            mean, low, high = _band(values, column)
            ax.plot(epochs, mean, ls=style, color=color)
            ax.fill_between(epochs, low, high, color=color, alpha=0.15, lw=0)
        entries.append((Line2D([], [], color=color, lw=2), f"{g.label} (n={len(g.runs)})"))
    styles = [(Line2D([], [], color="k", ls="-"), "train"),
              (Line2D([], [], color="k", ls="--"), "validation")]  # fmt: skip
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(ylabel)
    return entries, styles


def metric_vs_lambda(groups, metric: str, out: Path):
    """``metric`` against reg.lam (log axis) for each family of groups, with 95 % bands
    clipped to the metric's range; returns the figure."""
    from regexp.stats import mean_ci

    fig = _figure(6, 4)
    ax = fig.add_subplot()
    families: dict[str, list] = {}
    for g in groups:
        lam = g.config.get("reg.lam")
        used = "reg.lam" in getattr(g, "keys", {"reg.lam": lam})  # reg=none ignores reg.lam
        if used and isinstance(lam, (int, float)) and lam > 0:
            families.setdefault(str(g.config.get("reg.name")), []).append((lam, g))
    entries = []
    for (name, members), color in zip(families.items(), _colors(len(families)), strict=True):
        members.sort(key=lambda m: m[0])
        lams = [m[0] for m in members]
        cis = np.array([mean_ci(g.values(metric)) for _, g in members])
        entries.append((ax.plot(lams, cis[:, 0], "o-", color=color)[0], name))
        low, high = _clip(cis[:, 1], cis[:, 2], metric)
        ax.fill_between(lams, low, high, color=color, alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("reg.lam")
    ax.set_ylabel(metric)
    _legend(ax, entries, title="reg.name")
    _save_fitted(fig, out)
    return fig


def activation_histograms(groups, out: Path):
    """Test-split activations of each hidden layer, one density outline per group;
    returns the figure."""
    from matplotlib.lines import Line2D

    layers = sorted({k for g in groups for r in g.runs for k in _npz(r)}, key=_layer_order)
    fig = _figure(max(5.0, 3.2 * len(layers)), 3.4, left=0.06, wspace=0.3, top=0.85, right=0.98)
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    entries = []
    for g, color in zip(groups, _colors(len(groups)), strict=True):
        for ax, layer in zip(axes, layers, strict=True):
            values = [_npz(r)[layer].ravel() for r in g.runs if layer in _npz(r)]
            if values:
                counts, edges = np.histogram(np.concatenate(values), bins=40, density=True)
                ax.stairs(counts, edges, color=color)
        entries.append((Line2D([], [], color=color), g.label))
    for ax, layer in zip(axes, layers, strict=True):
        ax.set_title(layer)
        ax.set_xlabel("activation value")
    axes[0].set_ylabel("density")
    _legend(axes[-1], entries)
    _save_fitted(fig, out)
    return fig


def kl_mean_vs_rho(groups, out: Path):
    """Mean activation of the KL-penalised layer against rho; the dashed line is y = rho.
    Returns the figure."""
    from regexp.stats import mean_ci

    points = []
    for g in groups:
        rho = g.config.get("reg.rho")
        if isinstance(rho, (int, float)):
            layer = max(g.runs[0].metrics["activity_mean"], key=_layer_order)
            points.append((rho, mean_ci([r.metrics["activity_mean"][layer] for r in g.runs])))
    points.sort(key=lambda p: p[0])
    fig = _figure(5, 4)
    ax = fig.add_subplot()
    rhos = [p[0] for p in points]
    cis = np.array([p[1] for p in points])
    ax.errorbar(
        rhos,
        cis[:, 0],
        yerr=np.nan_to_num([cis[:, 0] - cis[:, 1], cis[:, 2] - cis[:, 0]]),
        fmt="o-",
        capsize=3,
        label="mean activation (test)",
    )
    ax.plot(rhos, rhos, "k--", lw=1, label="target rho")
    ax.set_xlabel("reg.rho")
    ax.set_ylabel("mean activation of the KL layer")
    ax.legend(fontsize=8)
    _save(fig, out)
    return fig


def report_figures(groups, out: Path) -> list[tuple[str, str, object]]:
    """The figures a report of these groups can show: (file name, caption, draw).

    Each group's task kind (``group.kind``) says which metric leads (accuracy; R²) and
    which curves it has beside the losses (accuracy; mae and r2)."""
    uses = [g for g in groups if "reg.lam" in getattr(g, "keys", ("reg.lam",))]  # not none's
    lams = {g.config.get("reg.lam") for g in uses if g.config.get("reg.lam")}
    kinds = {g.kind: [h for h in groups if h.kind == g.kind] for g in groups}  # in order
    figures = []
    if len(lams) > 1:
        metrics = dict.fromkeys(
            m for kind in kinds for m in (f"test_{kind.primary}", "test_data_loss")
        )
        for metric in metrics:
            figures.append(
                (
                    f"lambda_{metric}.png",
                    f"{metric} against reg.lam, 95 % band",
                    lambda m=metric: metric_vs_lambda(
                        [g for g in groups if m in g.kind.of_split("test")],
                        m,
                        out / f"lambda_{m}.png",
                    ),
                )
            )
    figures.append(
        (
            "loss_curves.png",
            "data loss per epoch: train solid, validation dashed",
            lambda: curve_bands(
                groups, ("data_loss", "val_data_loss"), out / "loss_curves.png", "data loss"
            ),
        )
    )
    for kind, of_kind in kinds.items():
        for series in kind.curves:  # accuracy; mae and r2
            figures.append(
                (
                    f"{series}_curves.png",
                    f"{series} per epoch: train solid, validation dashed",
                    lambda s=series, gs=of_kind: curve_bands(
                        gs, (s, f"val_{s}"), out / f"{s}_curves.png", s
                    ),
                )
            )
    if any(_npz(r) for g in groups for r in g.runs):
        figures.append(
            (
                "activations.png",
                "test-split activations per hidden layer",
                lambda: activation_histograms(groups, out / "activations.png"),
            )
        )
    if len({g.config.get("reg.rho") for g in groups} - {None}) > 0:
        figures.append(
            (
                "kl_rho.png",
                "KL sparsity: mean activation against rho",
                lambda: kl_mean_vs_rho(groups, out / "kl_rho.png"),
            )
        )
    return figures


def _npz(run) -> dict:
    """A run's test-split activations by layer (``report.Run.activations``)."""
    return run.activations


def _layer_order(name: str) -> int:
    return int(name[1:]) if name[1:].isdigit() else 10**6


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(1, n - 1)) for i in range(n)]


def pooled_histogram(values: np.ndarray, target: float, out: Path, title: str):
    """A histogram of pooled activations, their mean, and the target it should approach.
    Returns the figure."""
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    counts, edges = np.histogram(values, bins=50)
    ax.stairs(counts, edges, fill=True, color="tab:gray")
    ax.axvline(values.mean(), color="tab:red", label=f"mean {values.mean():.4f}")
    ax.axvline(target, color="k", ls="--", label=f"rho = {target}")
    ax.set_title(title)
    ax.set_xlabel("activation value")
    ax.set_ylabel("count")
    ax.legend()
    _save(fig, out)
    return fig
