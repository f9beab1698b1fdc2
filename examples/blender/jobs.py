"""The generations in flight, and the timer that turns finished ones into images.

Nothing here waits. The Generate operator hands the whole pipeline (uploads,
the job, polling, the download) to the client's engine thread with
`client.submit(...)`; `tick`, registered with bpy.app.timers, only reads each
generation's state (done, stage, progress) and, for one that has finished,
loads its downloaded files into bpy.data.images. The panel draws from the
same state.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field

import bpy

import scenario_uni1 as uni1

TICK = 0.1  # seconds between two looks while something is in flight


@dataclass
class Item:
    """One Generate press."""

    gen: uni1.Generation
    client: uni1.Client
    prompt: str
    material: str | None  # the material whose base color takes the result
    started: float = field(default_factory=time.monotonic)


@dataclass
class Outcome:
    """How the last generation ended, for the panel."""

    ok: bool
    text: str


_items: list[Item] = []
_last: list[Outcome] = []
_download_dir: str | None = None
# The client for the settings in force, and older ones still finishing work.
_client: uni1.Client | None = None
_client_settings: tuple[str | None, str | None, str | None] | None = None
_retired: list[uni1.Client] = []


def client_for(api_key: str, api_secret: str, base_url: str) -> uni1.Client:
    """The client for these settings; empty ones fall back to the environment
    (SCENARIO_SDK_API_KEY, SCENARIO_SDK_API_SECRET, SCENARIO_BASE_URL). Building
    a client sends nothing (its engine starts with its first task); one whose
    settings changed is closed once its generations are over."""
    global _client, _client_settings
    settings = (api_key or None, api_secret or None, base_url or None)
    if _client is not None and settings == _client_settings:
        return _client
    client = uni1.Client(api_key=settings[0], api_secret=settings[1], base_url=settings[2])
    if _client is not None:
        _retired.append(_client)
    _client, _client_settings = client, settings
    _close_retired()
    return client


def prepare(prefs) -> None:
    """Builds the client ahead of the first Generate press (so that press does
    not load the client's modules), when the settings are complete."""
    download_dir()
    try:
        client_for(prefs.api_key, prefs.api_secret, prefs.base_url)
    except uni1.Uni1Error:
        pass  # incomplete settings: the Generate press reports it


def _close_retired() -> None:
    busy = {id(item.client) for item in _items}
    for client in [c for c in _retired if id(c) not in busy]:
        _retired.remove(client)
        client.close()


def download_dir() -> str:
    """Where finished files land before they are packed into the .blend."""
    global _download_dir
    if _download_dir is None or not os.path.isdir(_download_dir):
        _download_dir = tempfile.mkdtemp(prefix="scenario_uni1_")
    return _download_dir


def items() -> list[Item]:
    return list(_items)


def last_outcome() -> Outcome | None:
    return _last[-1] if _last else None


def add(item: Item) -> None:
    _items.append(item)
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK, persistent=True)


def cancel(index: int = -1) -> int:
    """Cancels the item at index (all of them with -1); how many were running.
    Generation.cancel() only tells the engine, which cancels the server job."""
    chosen = _items if index < 0 else _items[index : index + 1]
    return sum(1 for item in chosen if item.gen.cancel())


def tick() -> float | None:
    """The timer: finished generations become images. Returns when to look again
    (None, which unregisters the timer, once nothing is in flight)."""
    finished = [item for item in _items if item.gen.done]
    for item in finished:
        _items.remove(item)
        _finish(item)
    if finished:
        _close_retired()
        _redraw()
    elif _items:
        _redraw()  # progress moved
    return TICK if _items else None


def _finish(item: Item) -> None:
    error = item.gen.error
    if error is not None:
        if isinstance(error, uni1.JobCanceledError):
            _last.append(Outcome(False, "Canceled"))
        else:
            _last.append(Outcome(False, f"{type(error).__name__}: {error}"))
        return
    names = []
    for path in item.gen.result(0):
        image = bpy.data.images.load(os.fspath(path), check_existing=False)
        image.name = _image_name(item.prompt)
        image.pack()  # the .blend keeps the pixels; the temporary file may go
        names.append(image.name)
        if item.material is not None:
            _use_as_base_color(item.material, image)
        try:
            os.unlink(path)
        except OSError:
            pass
    _last.append(Outcome(True, ", ".join(names) or "no image"))


def _image_name(prompt: str) -> str:
    words = "_".join(prompt.split()[:4])
    return f"uni1_{words}"[:60] or "uni1"


def _use_as_base_color(material_name: str, image: bpy.types.Image) -> None:
    material = bpy.data.materials.get(material_name)
    if material is None or material.node_tree is None:
        return
    tree = material.node_tree
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        return
    node = tree.nodes.new("ShaderNodeTexImage")
    node.image = image
    node.location = (bsdf.location.x - 320, bsdf.location.y)
    tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm is not None else ():
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def shutdown() -> None:
    """On unregister: cancel what is in flight (no result could land any more,
    so the server jobs are canceled rather than left running), forget the
    timer, close the clients."""
    global _client, _client_settings
    cancel()
    _items.clear()
    _last.clear()
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    for client in [*_retired, *([_client] if _client is not None else [])]:
        client.close()
    _retired.clear()
    _client = _client_settings = None
