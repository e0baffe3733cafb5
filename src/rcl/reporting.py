"""Tables and figures for terminal and run folders (rich, markdown, matplotlib)."""

from __future__ import annotations

import io
from pathlib import Path

from .data.io import atomic_write_bytes


def finite_json(obj):
    """JSON-safe copy: NaN/inf floats become None (strict JSON has no such numbers), recursively."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def print_table(title: str, rows: list[dict], file=None) -> None:
    """Print rows with keys method / psnr (dB) / ssim: a rich table on a terminal, plain Markdown
    rows (the title, then one row per line, never wrapped) when the output is redirected to a
    file, a pipe or a CI log.

    Args:
        file: text stream (default ``sys.stdout``).
    """
    import sys

    out = file if file is not None else sys.stdout
    isatty = getattr(out, "isatty", None)
    if not (callable(isatty) and isatty()):
        cols = [("method", "method", ""), ("psnr", "PSNR (dB)", ".2f"), ("ssim", "SSIM", ".4f")]
        out.write(f"{title}\n\n{markdown_table(rows, cols)}")
        out.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("method")
    table.add_column("PSNR (dB)", justify="right")
    table.add_column("SSIM", justify="right")
    for r in rows:
        table.add_row(r["method"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}")
    Console(file=out).print(table)


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table; ``columns`` = [(key, header, format spec)]."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    lines = [head, sep]
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key, "")
            cells.append(format(v, fmt) if isinstance(v, (int, float)) and fmt else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, lambda tmp: tmp.write_bytes(buf.getvalue()))
    return path


def plot_loss_curves(curves: dict[str, list[dict]], path: Path, keys=("loss",)) -> Path:
    """One panel per curve: each key of the per-step logs against the step (log y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (name, hist) in zip(axes[0], curves.items()):
        steps = [h["step"] for h in hist]
        for k in keys:
            if hist and k in hist[0]:
                ax.plot(steps, [h[k] for h in hist], label=k, lw=1)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def _busiest_window(img, crop: int) -> tuple[int, int]:
    """Top-left corner of the crop×crop window (on a half-crop grid) with the largest std."""
    _, h, w = img.shape
    best, corner = -1.0, (max(0, (h - crop) // 2), max(0, (w - crop) // 2))
    step = max(1, crop // 2)
    for t in range(0, max(1, h - crop + 1), step):
        for left in range(0, max(1, w - crop + 1), step):
            v = float(img[:, t:t + crop, left:left + crop].std())
            if v > best:
                best, corner = v, (t, left)
    return corner


def plot_restorations(panels: list[tuple[str, list]], titles: list[str], path: Path, crop: int = 128) -> Path:
    """Grid: one row per image, one column per panel (e.g. noisy / restored / clean); each row shows
    the crop×crop window where the last panel (the clean image) has the most detail.

    ``panels`` = [(column title, [(C, H, W) tensors per row])].
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(titles), len(panels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.7 * n_rows), squeeze=False)
    # per row, the crop window where the last panel (the clean reference) has the most detail
    corners = [_busiest_window(panels[-1][1][i], crop) for i in range(n_rows)]
    for j, (col, imgs) in enumerate(panels):
        for i in range(n_rows):
            img = imgs[i].clamp(0, 1)
            t, left = corners[i]
            c = img[:, t:t + crop, left:left + crop].permute(1, 2, 0).numpy()
            ax = axes[i][j]
            ax.imshow(c[..., 0] if c.shape[2] == 1 else c, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col, fontsize=9)
            if j == 0:
                ax.set_ylabel(titles[i], fontsize=8)
    return save_figure(fig, path)


def plot_metric_vs_fraction(panels: list[tuple[str, dict, dict]], path: Path, ylabel: str = "PSNR (dB)",
                            ncols: int = 4) -> Path:
    """Subplots of a metric against the label fraction (log x), one line per method with error bars.

    ``panels`` = [(title, {method: (fractions, means, stds)}, {reference label: y})]; the
    references (e.g. noisy input, BM3D, a 0-label network) are drawn as horizontal lines. NaN stds
    (one seed) are drawn without error bars.
    """
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(panels))
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False, layout="constrained")
    styles = [":", "--", "-."]
    for ax, (title, series, refs) in zip(axes.flat, panels):
        for label, (xs, ys, errs) in series.items():
            if not xs:
                continue
            yerr = [e if e is not None and math.isfinite(e) else 0.0 for e in errs]
            ax.errorbar(xs, ys, yerr=yerr if any(yerr) else None, marker="o", ms=3, lw=1.2, capsize=2, label=label)
        for i, (label, y) in enumerate(refs.items()):
            ax.axhline(y, color="0.35", lw=1, ls=styles[i % len(styles)], label=label)
        ax.set_xscale("log")
        ticks = sorted({x for xs, _, _ in series.values() for x in xs})
        if ticks:
            ax.set_xticks(ticks, [f"{x * 100:g} %" for x in ticks], fontsize=8)
            ax.minorticks_off()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("label fraction")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return save_figure(fig, path)
