"""A Generation in a notebook: a progress bar while it runs, then the image.

_repr_html_ renders the state at the moment it is called. In a Jupyter
kernel, _ipython_display_ makes the bar live: the output gets a display id,
and the kernel's own event loop (running between cells; no thread) redraws it
every half second and once more, with the images, the moment the engine
reports the end.
"""

import base64
import html
import os
import sys

_REFRESH = 0.5  # seconds between redraws of a running generation
_MAX_INLINE_FILE = 32 * 1024 * 1024  # larger downloaded files are linked, not embedded


def _img(data: bytes, mime_type: str, title: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<img src="data:{html.escape(mime_type)};base64,{encoded}" '
        f'title="{html.escape(title)}" style="max-width:100%;margin:2px">'
    )


def _item_html(item) -> str:
    data = getattr(item, "data", None)
    if isinstance(data, bytes):  # an Image
        return _img(data, item.mime_type, item.asset_id or "")
    path = os.fspath(item)  # a downloaded file
    from ._inputs import sniff_mime

    try:
        if os.path.getsize(path) <= _MAX_INLINE_FILE:
            with open(path, "rb") as f:
                data = f.read()
            mime_type = sniff_mime(data)
            if mime_type is not None:
                return _img(data, mime_type, path)
    except OSError:
        pass
    return f"<code>{html.escape(path)}</code>"


def generation_html(gen) -> str:
    job = gen.job
    head = f"<code>{html.escape(job.id)}</code> " if job is not None else ""
    stage = gen.stage
    if not gen.done:
        progress = gen.progress
        value = "" if progress is None else f' value="{max(0.0, min(1.0, progress)):.3f}"'
        percent = "" if progress is None else f" {round(progress * 100)}%"
        return (
            f'<div class="scenario-uni1-generation"><progress max="1"{value} '
            f'style="width:240px;vertical-align:middle"></progress> '
            f"{head}{html.escape(stage)}{percent}</div>"
        )
    error = gen.error
    if error is not None:
        return (
            f'<div class="scenario-uni1-generation">{head}<b>{html.escape(stage)}</b>: '
            f"{html.escape(type(error).__name__)}: {html.escape(str(error))}</div>"
        )
    items = gen.result(0)
    body = "".join(_item_html(item) for item in items) or "no images"
    return f'<div class="scenario-uni1-generation">{head}<br>{body}</div>'


def _bundle(gen) -> dict:
    return {"text/plain": repr(gen), "text/html": generation_html(gen)}


def ipython_display(gen) -> None:
    """Show gen, live: the display is redrawn until the generation ends."""
    from IPython.display import display  # type: ignore[import]

    if gen.done or "ipykernel" not in sys.modules:
        display(_bundle(gen), raw=True)
        return
    handle = display(_bundle(gen), raw=True, display_id=True)
    import asyncio

    try:
        loop = asyncio.get_running_loop()  # the kernel runs cells inside its loop
    except RuntimeError:
        return  # no loop to redraw from: the snapshot stays
    state: dict[str, asyncio.TimerHandle | None] = {"timer": None}

    def redraw() -> None:
        handle.update(_bundle(gen), raw=True)
        if gen.done:
            if state["timer"] is not None:
                state["timer"].cancel()
            return
        state["timer"] = loop.call_later(_REFRESH, redraw)

    def ended(_gen) -> None:
        from ._aio import call_in_loop

        call_in_loop(loop, redraw)

    state["timer"] = loop.call_later(_REFRESH, redraw)
    gen.add_done_callback(ended)
