"""A small plotting helper that writes inline SVG: linear and log axes, lines, points, boxes.

The report must be one self-contained file that renders the same everywhere, so figures are
plain SVG elements written here, not images from a plotting library. A figure's title and
notes are HTML around the SVG, so that they wrap to its width like any paragraph; inside
the SVG, every margin is sized from the text it holds (:func:`text_width`, a deliberately
generous estimate), so that no label is cut off at the edge. Every piece of text a caller
passes (titles, labels, op names) is escaped, with bidirectional controls made visible
(:func:`gradverify._record.visible`); numbers are rounded to a tenth of a pixel to keep a
figure to a few kilobytes.
"""

import math

from markupsafe import Markup, escape

from gradverify._record import visible

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
FONT_SIZE = 11  # px, of every text inside a figure
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
# Advance widths in em, rounded up from DejaVu Sans (one of the widest common sans-serif
# faces, and Linux's default), so that the estimate errs on the wide side in other fonts.
_NARROW, _WIDE = frozenset(" !'(),-./:;[]`fijlrtI|{}⁰¹²³⁴⁵⁶⁷⁸⁹⁻"), frozenset("mwMW@%—…")
_SAFETY = 1.1


def text_width(text, size=FONT_SIZE):
    """A generous estimate of the width of ``text`` in pixels at ``size`` px (for layout only),
    as the figure shows it (bidirectional controls as ``<U+202E>``).

    Examples
    --------
    >>> text_width("") == 0 and text_width("mmm") > text_width("iii")
    True
    """
    ems = sum(0.42 if c in _NARROW else 1.0 if c in _WIDE else 0.76 if c.isupper() else 0.64 for c in visible(text))
    return ems * size * _SAFETY


def _text(text):
    """Text for SVG content or an attribute: bidirectional controls shown, then escaped."""
    return escape(visible(text))


class Axis:
    """The mapping of data values onto ``[0, 1]`` along one side of a plot.

    Parameters
    ----------
    lo, hi : float
        The data range shown, ``lo < hi`` (both positive on a log axis).
    log : bool, optional
        A base-10 logarithmic axis.
    label : str, optional
        The axis title.
    ticks : list of (float, str), optional
        Tick positions and labels to use instead of the automatic ones (a categorical axis).

    Examples
    --------
    >>> Axis(1e-8, 1.0, log=True).fraction(1e-4)
    0.5
    """

    def __init__(self, lo, hi, *, log=False, label="", ticks=None):
        if not lo < hi or (log and lo <= 0):
            msg = f"axis range [{lo}, {hi}] is empty{' or not positive on a log axis' if log else ''}"
            raise ValueError(msg)
        self.lo, self.hi, self.log, self.label, self._ticks = lo, hi, log, label, ticks

    def fraction(self, value):
        """Where ``value`` falls, 0 at ``lo`` and 1 at ``hi``; None where it cannot be drawn."""
        if value is None or isinstance(value, str) or not math.isfinite(value):
            return None
        if self.log:
            if value <= 0:
                return None
            return (math.log10(value) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (value - self.lo) / (self.hi - self.lo)

    def ticks(self):
        """``(value, label)`` pairs inside the range, the label as plain text (superscripts on log axes)."""
        if self._ticks is not None:
            return [(v, str(t)) for v, t in self._ticks]
        if self.log:
            first, last = math.ceil(math.log10(self.lo) - 1e-9), math.floor(math.log10(self.hi) + 1e-9)
            every = max(1, math.ceil((last - first + 1) / 9))  # at most about nine labels
            return [(10.0**k, "10" + str(k).translate(_SUPERSCRIPT)) for k in range(first, last + 1) if k % every == 0]
        step = _nice_step((self.hi - self.lo) / 5)
        start = math.ceil(self.lo / step - 1e-9)
        values = [k * step for k in range(start, int(math.floor(self.hi / step + 1e-9)) + 1)]
        return [(v, f"{v:g}") for v in values]


def _nice_step(raw):
    """1, 2 or 5 times a power of ten, the nearest above ``raw``."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * 0.999)


def _n(value):
    """A coordinate as short text."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


class Figure:
    """One plot: axes, a frame, and what is drawn in it, written out by :meth:`html`.

    Parameters
    ----------
    key : str
        Unique within the page: names the clip path that keeps marks inside the frame.
    x, y : Axis
    title : str, optional
        Shown above the plot as HTML, so that a long title wraps instead of being cut off.
    width, height : int, optional
        The size of the plotting frame in pixels (margins are added around it).
    left : int, optional
        The least left margin; it grows to hold the y tick labels.
    max_label : int, optional
        The widest a y tick label may be, in pixels; a longer one (an op's name, say) is
        shortened with "…" and shows in full as its tooltip.

    Examples
    --------
    >>> fig = Figure("demo", x=Axis(1e-3, 1, log=True), y=Axis(0, 1), title="a <b> title")
    >>> fig.line([1e-3, 1e-2, 1e-1], [0.1, 0.5, 0.9], color=PALETTE[0], label="curve")
    >>> html = fig.html()
    >>> "<svg" in html and "a &lt;b&gt; title" in html
    True
    """

    def __init__(self, key, *, x, y, title="", width=520, height=260, left=0, max_label=240):
        self.key, self.x, self.y, self.title = key, x, y, title
        self.width, self.height = width, height
        self.top = 12  # half a tick label above the frame's top edge, and a little air
        self._y_ticks = [(v, _shorten(visible(t), max_label)) for v, t in y.ticks() if _inside(y.fraction(v))]
        self._x_ticks = [(v, t) for v, t in x.ticks() if _inside(x.fraction(v))]
        widest = max((text_width(t) for _, (t, _full) in self._y_ticks), default=0.0)
        label_space = 2 * FONT_SIZE if y.label else 0  # the rotated y label
        self.left = math.ceil(max(left, label_space + widest + 9, _half_first_tick(x, self._x_ticks) + 4))
        self._marks = []  # SVG fragments inside the clipped frame
        self._overlays = []  # SVG fragments outside the clip (labels)
        self._legend = []  # (color, label, kind)
        self._notes = []
        self._right = 12 + max((text_width(t) / 2 for v, t in self._x_ticks[-1:] if _inside(x.fraction(v), 1.0)), default=0.0)

    def point(self, x, y):
        """Pixel coordinates of a data point, or None where it cannot be drawn."""
        fx, fy = self.x.fraction(x), self.y.fraction(y)
        if fx is None or fy is None:
            return None
        return self.left + fx * self.width, self.top + (1.0 - fy) * self.height

    def line(self, xs, ys, *, color, label=None, width=1.6, dash=None, opacity=1.0):
        """A polyline, broken where a value cannot be drawn (NaN, or not positive on a log axis)."""
        runs, run = [], []
        for p in map(self.point, xs, ys):
            if p is None:
                runs, run = runs + [run] if run else runs, []
            else:
                run.append(p)
        runs += [run] if run else []
        dashing = f' stroke-dasharray="{escape(dash)}"' if dash else ""
        for run in runs:
            path = " ".join(f"{_n(px)},{_n(py)}" for px, py in run)
            self._marks.append(
                f'<polyline points="{path}" fill="none" stroke="{escape(color)}" stroke-width="{width}"'
                f' stroke-opacity="{opacity}" stroke-linejoin="round"{dashing}/>'
            )
        if label:
            self._legend.append((color, label, "line"))

    def points(self, xs, ys, *, color, label=None, radius=2.4, opacity=0.75, hollow=False):
        """Dots at the data points that can be drawn; dots on the same pixel are drawn once."""
        fill = "none" if hollow else escape(color)
        seen, dots = set(), []
        for p in map(self.point, xs, ys):
            if p is not None and (at := (_n(p[0]), _n(p[1]))) not in seen:
                seen.add(at)
                dots.append(f'<circle cx="{at[0]}" cy="{at[1]}" r="{radius}"/>')
        if dots:
            self._marks.append(
                f'<g fill="{fill}" stroke="{escape(color)}" fill-opacity="{opacity}" stroke-opacity="{opacity}">{"".join(dots)}</g>'
            )
        if label:
            self._legend.append((color, label, "point"))

    def bar(self, x, y, *, color, base=0.0, half_width=8.0, mark="bar", title=None):
        """A vertical bar at ``x`` from ``base`` to ``y`` (at least a pixel high, so a zero shows).

        ``mark`` is its SVG class and ``title`` its tooltip, both escaped.
        """
        top, foot = self.point(x, y), self.point(x, base)
        if top is None or foot is None:
            return
        px, y0, y1 = top[0], min(top[1], foot[1]), max(top[1], foot[1])
        if y1 - y0 < 1.5:
            mid = (y0 + y1) / 2
            y0, y1 = mid - 0.75, mid + 0.75
        tip = f"<title>{_text(title)}</title>" if title else ""
        self._marks.append(
            f'<rect class="{escape(mark)}" x="{_n(px - half_width)}" y="{_n(y0)}" width="{_n(2 * half_width)}"'
            f' height="{_n(y1 - y0)}" fill="{escape(color)}">{tip}</rect>'
        )

    def legend(self, color, label, kind="point"):
        """A legend entry without a mark of its own."""
        self._legend.append((color, label, kind))

    def box(self, y, quartiles, *, color, half_height=5.0):
        """A horizontal box plot at ``y`` from ``(min, q1, median, q3, max)``."""
        ends = [self.point(q, y) for q in quartiles]
        if any(p is None for p in ends):
            return
        (x0, py), (x1, _), (xm, _), (x3, _), (x4, _) = ends
        c, h = escape(color), half_height
        self._marks.append(
            f'<g stroke="{c}" stroke-width="1.2"><line x1="{_n(x0)}" y1="{_n(py)}" x2="{_n(x4)}" y2="{_n(py)}"/>'
            f'<rect x="{_n(x1)}" y="{_n(py - h)}" width="{_n(max(x3 - x1, 0.8))}" height="{_n(2 * h)}"'
            f' fill="{c}" fill-opacity="0.18"/><line x1="{_n(xm)}" y1="{_n(py - h)}" x2="{_n(xm)}"'
            f' y2="{_n(py + h)}" stroke-width="2.2"/></g>'
        )

    def vline(self, x, *, color="#555555", label=None, dash="4 3"):
        """A vertical rule across the frame, labelled at its foot (on whichever side has room)."""
        fx = self.x.fraction(x)
        if fx is None or not 0 <= fx <= 1:
            return
        px = self.left + fx * self.width
        self._marks.append(
            f'<line x1="{_n(px)}" y1="{self.top}" x2="{_n(px)}" y2="{self.top + self.height}"'
            f' stroke="{escape(color)}" stroke-dasharray="{escape(dash)}"/>'
        )
        if label:
            fits_right = px + 3 + text_width(label) <= self.left + self.width
            at, anchor = (px + 3, "start") if fits_right else (px - 3, "end")
            self._overlays.append(
                f'<text x="{_n(at)}" y="{self.top + self.height - 5}" text-anchor="{anchor}" fill="{escape(color)}">{_text(label)}</text>'
            )

    def hline(self, y, *, color="#555555", label=None, dash="4 3"):
        """A horizontal rule across the frame, labelled at its right end (above it, or below
        where the frame's top leaves no room)."""
        fy = self.y.fraction(y)
        if fy is None or not 0 <= fy <= 1:
            return
        py = self.top + (1.0 - fy) * self.height
        self._marks.append(
            f'<line x1="{self.left}" y1="{_n(py)}" x2="{self.left + self.width}" y2="{_n(py)}"'
            f' stroke="{escape(color)}" stroke-dasharray="{escape(dash)}"/>'
        )
        if label:
            at = py - 4 if py - 4 - FONT_SIZE >= self.top else py + FONT_SIZE + 2
            self._overlays.append(
                f'<text x="{self.left + self.width - 3}" y="{_n(at)}" text-anchor="end" fill="{escape(color)}">{_text(label)}</text>'
            )

    def note(self, text):
        """A sentence under the plot (HTML: it wraps to the figure's width), for what the figure cannot show."""
        self._notes.append(text)

    def html(self):
        """The figure as HTML (``Markup``: safe to put in the page): its title, an inline
        ``<svg>`` whose size holds all its text, and its notes."""
        axes_bottom = self.top + self.height
        below = axes_bottom + 6 + FONT_SIZE + (18 if self.x.label else 0)
        legend, below, legend_right = self._legend_rows(below)
        total_w = math.ceil(max(self.left + self.width + self._right, legend_right + 8, self._x_label_right() + 8))
        total_h = math.ceil(below + 8)
        clip = f"clip-{escape(self.key)}"
        svg = [
            f'<svg viewBox="0 0 {total_w} {total_h}" width="{total_w}" height="{total_h}" role="img"'
            f' class="plot" font-size="{FONT_SIZE}" font-family="system-ui, sans-serif">',
            f"<title>{_text(self.title or self.key)}</title>",
            f'<clipPath id="{clip}"><rect x="{self.left}" y="{self.top}" width="{self.width}" height="{self.height}"/></clipPath>',
            f'<rect x="{self.left}" y="{self.top}" width="{self.width}" height="{self.height}" fill="#fff" stroke="#999"/>',
            *self._axis_marks(),
            f'<g clip-path="url(#{clip})">{"".join(self._marks)}</g>',
            *self._overlays,
            *legend,
            "</svg>",
        ]
        title = f'<p class="chart-title">{_text(self.title)}</p>' if self.title else ""
        notes = "".join(f'<p class="note">{_text(text)}</p>' for text in self._notes)
        return Markup(f'<div class="chart" style="width: {total_w}px">{title}{"".join(svg)}{notes}</div>')

    def _x_label_right(self):
        if not self.x.label:
            return 0.0
        return self.left + self.width / 2 + text_width(self.x.label) / 2

    def _axis_marks(self):
        marks, bottom = [], self.top + self.height
        for value, text in self._x_ticks:
            px = _n(self.left + self.x.fraction(value) * self.width)
            marks.append(f'<line x1="{px}" y1="{self.top}" x2="{px}" y2="{bottom}" class="grid"/>')
            marks.append(f'<text x="{px}" y="{bottom + 14}" text-anchor="middle">{_text(text)}</text>')
        for value, (text, full) in self._y_ticks:
            py = _n(self.top + (1 - self.y.fraction(value)) * self.height)
            tip = f"<title>{_text(full)}</title>" if full != text else ""
            marks.append(f'<line x1="{self.left}" y1="{py}" x2="{self.left + self.width}" y2="{py}" class="grid"/>')
            marks.append(f'<text x="{self.left - 5}" y="{py}" dy="0.32em" text-anchor="end">{tip}{_text(text)}</text>')
        if self.x.label:
            marks.append(
                f'<text x="{_n(self.left + self.width / 2)}" y="{bottom + 32}" text-anchor="middle">{_text(self.x.label)}</text>'
            )
        if self.y.label:
            cy = _n(self.top + self.height / 2)
            marks.append(f'<text transform="translate(12 {cy}) rotate(-90)" text-anchor="middle">{_text(self.y.label)}</text>')
        return marks

    def _legend_rows(self, y):
        """Legend entries laid out left to right under the axes, wrapping at the frame's width
        (or at the widest entry, which then widens the figure): (parts, bottom, right edge)."""
        if not self._legend:
            return [], y, 0.0
        widths = [26 + text_width(text) for _, text, _ in self._legend]
        limit = self.left + max(self.width, max(widths))
        parts, x, y, right = [], self.left, y + 18, 0.0
        for (color, text, kind), width in zip(self._legend, widths):
            if x + width > limit and x > self.left:
                x, y = self.left, y + 16
            c = escape(color)
            swatch = (
                f'<line x1="{_n(x)}" y1="{y - 4}" x2="{_n(x + 16)}" y2="{y - 4}" stroke="{c}" stroke-width="2"/>'
                if kind == "line"
                else f'<circle cx="{_n(x + 8)}" cy="{y - 4}" r="3.5" fill="{c}"/>'
            )
            parts.append(f'{swatch}<text x="{_n(x + 21)}" y="{y}">{_text(text)}</text>')
            right = max(right, x + width)
            x += width + 12
        return parts, y + 4, right


def _inside(fraction, at=None):
    """Whether an axis fraction lies on the axis (at one end, when ``at`` is given)."""
    if fraction is None or not -1e-9 <= fraction <= 1 + 1e-9:
        return False
    return at is None or abs(fraction - at) < 0.05


def _half_first_tick(axis, ticks):
    """Half the width of the x axis's first label, where it sits at the frame's left edge."""
    return text_width(ticks[0][1]) / 2 if ticks and _inside(axis.fraction(ticks[0][0]), 0.0) else 0.0


def _shorten(text, limit):
    """``(shown, full)``: ``text`` cut with "…" to at most ``limit`` pixels wide."""
    if text_width(text) <= limit:
        return text, text
    shown = text
    while shown and text_width(shown + "…") > limit:
        shown = shown[:-1]
    return shown + "…", text
