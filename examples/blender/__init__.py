"""Scenario Uni-1 for Blender: a sidebar panel (View3D > Sidebar > Scenario) that
generates images with Luma Uni-1 Max and adds them to bpy.data.images.

The panel's settings live on the scene (prompt, aspect ratio, format,
references); the credentials live in the add-on's preferences (saved with
Blender's preferences, never in a .blend) or in the environment. The work runs
on the scenario_uni1 client's engine thread (jobs.py): nothing here waits on
the network.
"""

from __future__ import annotations

import os
import time

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

import scenario_uni1 as uni1

from . import jobs

# ---- settings ------------------------------------------------------------------------


def _settings_changed(prefs, context):
    jobs.prepare(prefs)


class SCENARIO_UNI1_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    api_key: StringProperty(
        name="API key",
        description="Scenario API key (empty: SCENARIO_SDK_API_KEY from the environment)",
        subtype="PASSWORD",
        update=_settings_changed,
    )
    api_secret: StringProperty(
        name="API secret",
        description="Scenario API secret (empty: SCENARIO_SDK_API_SECRET from the environment)",
        subtype="PASSWORD",
        update=_settings_changed,
    )
    base_url: StringProperty(
        name="API URL",
        description="Empty for Scenario's API (or SCENARIO_BASE_URL from the environment)",
        update=_settings_changed,
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "api_key")
        layout.prop(self, "api_secret")
        layout.prop(self, "base_url")
        layout.label(text="Kept in Blender's preferences, never in .blend files.", icon="LOCKED")


def preferences() -> SCENARIO_UNI1_AddonPreferences:
    return bpy.context.preferences.addons[__package__].preferences


class SCENARIO_UNI1_Reference(bpy.types.PropertyGroup):
    image: PointerProperty(name="Image", type=bpy.types.Image)
    filepath: StringProperty(name="File", subtype="FILE_PATH")


class SCENARIO_UNI1_Settings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What to generate, or how to edit")
    aspect_ratio: EnumProperty(
        name="Aspect ratio",
        items=[(r, r, f"{r} (width:height)") for r in uni1.ASPECT_RATIOS],
        default="1:1",
    )
    output_format: EnumProperty(
        name="Format",
        items=[(f, f.upper(), f"The image comes back as {f.upper()}") for f in uni1.OUTPUT_FORMATS],
        default="png",
    )
    references: CollectionProperty(type=SCENARIO_UNI1_Reference)
    reference_index: IntProperty()
    use_as_base_color: BoolProperty(
        name="Set as base color",
        description="Plug the result into the active material's Base Color",
        default=False,
    )


def reference_input(ref: SCENARIO_UNI1_Reference):
    """What submit() takes for one reference: a path, or the packed image's bytes."""
    image = ref.image
    if image is None:
        return bpy.path.abspath(ref.filepath) if ref.filepath else None
    if image.packed_file is None:
        path = bpy.path.abspath(image.filepath, library=image.library) if image.filepath else ""
        if path and os.path.isfile(path) and not image.is_dirty:
            return path
        # Painted or made in Blender and not saved: packing encodes it as PNG.
        image.pack()
        if image.packed_file is None:
            raise ValueError(f'image "{image.name}" has no pixels to send: save or paint it first')
    return bytes(image.packed_file.data)


# ---- operators -----------------------------------------------------------------------


class SCENARIO_UNI1_OT_generate(bpy.types.Operator):
    """Start a generation on the client's engine; the image lands in bpy.data.images"""

    bl_idname = "scenario_uni1.generate"
    bl_label = "Generate"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.scenario_uni1.prompt.strip() != ""

    def execute(self, context):
        settings = context.scene.scenario_uni1
        try:
            refs = [r for r in map(reference_input, settings.references) if r is not None]
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        material = None
        if settings.use_as_base_color:
            obj = context.active_object
            material = obj.active_material.name if obj and obj.active_material else None
        prefs = preferences()
        try:
            client = jobs.client_for(prefs.api_key, prefs.api_secret, prefs.base_url)
            gen = client.submit(
                settings.prompt,
                image_refs=refs,
                aspect_ratio=settings.aspect_ratio,
                output_format=settings.output_format,
                download=jobs.download_dir(),
            )
        except (uni1.Uni1Error, OSError, TypeError, ValueError) as e:
            # Bad input or settings: caught before anything is sent or paid for.
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        jobs.add(jobs.Item(gen, client, settings.prompt, material))
        return {"FINISHED"}


class SCENARIO_UNI1_OT_cancel(bpy.types.Operator):
    """Cancel the generation (all of them when index is -1); the server job is canceled"""

    bl_idname = "scenario_uni1.cancel"
    bl_label = "Cancel"

    index: IntProperty(default=-1)

    @classmethod
    def poll(cls, context):
        return bool(jobs.items())

    def execute(self, context):
        jobs.cancel(self.index)
        return {"FINISHED"}


class SCENARIO_UNI1_OT_reference_add(bpy.types.Operator):
    """Add a reference: the image shown in an Image Editor, else an empty slot"""

    bl_idname = "scenario_uni1.reference_add"
    bl_label = "Add Reference"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        settings = context.scene.scenario_uni1
        ref = settings.references.add()
        space = context.space_data
        if space is not None and space.type == "IMAGE_EDITOR" and space.image is not None:
            ref.image = space.image
        settings.reference_index = len(settings.references) - 1
        return {"FINISHED"}


class SCENARIO_UNI1_OT_reference_remove(bpy.types.Operator):
    """Remove the selected reference"""

    bl_idname = "scenario_uni1.reference_remove"
    bl_label = "Remove Reference"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return len(context.scene.scenario_uni1.references) > 0

    def execute(self, context):
        settings = context.scene.scenario_uni1
        settings.references.remove(settings.reference_index)
        settings.reference_index = max(
            0, min(settings.reference_index, len(settings.references) - 1)
        )
        return {"FINISHED"}


# ---- panel ---------------------------------------------------------------------------


class SCENARIO_UNI1_UL_references(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.prop_search(item, "image", bpy.data, "images", text="")
        if item.image is None:
            row.prop(item, "filepath", text="")


class SCENARIO_UNI1_PT_generate(bpy.types.Panel):
    bl_idname = "SCENARIO_UNI1_PT_generate"
    bl_label = "Scenario Uni-1"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Scenario"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.scenario_uni1
        layout.prop(settings, "prompt", text="")
        row = layout.row()
        row.prop(settings, "aspect_ratio", text="")
        row.prop(settings, "output_format", text="")

        layout.label(text="References")
        row = layout.row()
        row.template_list(
            "SCENARIO_UNI1_UL_references",
            "",
            settings,
            "references",
            settings,
            "reference_index",
            rows=2,
        )
        col = row.column(align=True)
        col.operator(SCENARIO_UNI1_OT_reference_add.bl_idname, text="", icon="ADD")
        col.operator(SCENARIO_UNI1_OT_reference_remove.bl_idname, text="", icon="REMOVE")

        layout.prop(settings, "use_as_base_color")
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator(SCENARIO_UNI1_OT_generate.bl_idname, icon="IMAGE_DATA")
        row.operator(SCENARIO_UNI1_OT_cancel.bl_idname, icon="CANCEL")

        for i, item in enumerate(jobs.items()):
            # Plain reads of the generation's state: no I/O.
            gen = item.gen
            box = layout.box()
            head = box.row()
            head.label(text=item.prompt[:40], icon="TIME")
            head.operator(SCENARIO_UNI1_OT_cancel.bl_idname, text="", icon="X").index = i
            progress = gen.progress
            text = gen.stage if progress is None else f"{gen.stage} {round(progress * 100)}%"
            text += f"  {time.monotonic() - item.started:.0f} s"
            box.progress(factor=progress or 0.0, type="BAR", text=text)
        outcome = jobs.last_outcome()
        if outcome is not None:
            layout.label(text=outcome.text, icon="CHECKMARK" if outcome.ok else "ERROR")


# ---- registration --------------------------------------------------------------------

CLASSES = (
    SCENARIO_UNI1_AddonPreferences,
    SCENARIO_UNI1_Reference,
    SCENARIO_UNI1_Settings,
    SCENARIO_UNI1_OT_generate,
    SCENARIO_UNI1_OT_cancel,
    SCENARIO_UNI1_OT_reference_add,
    SCENARIO_UNI1_OT_reference_remove,
    SCENARIO_UNI1_UL_references,
    SCENARIO_UNI1_PT_generate,
)


def _prepare_after_start():
    # Preferences cannot be read while add-ons register; this runs once
    # Blender's event loop does (timers never fire in background mode).
    jobs.prepare(preferences())


def register():
    # The client's modules load lazily: load them now rather than in the
    # first Generate press.
    _ = uni1.Client, uni1.Generation
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.scenario_uni1 = PointerProperty(type=SCENARIO_UNI1_Settings)
    bpy.app.timers.register(_prepare_after_start, first_interval=0.0)


def unregister():
    if bpy.app.timers.is_registered(_prepare_after_start):
        bpy.app.timers.unregister(_prepare_after_start)
    jobs.shutdown()
    del bpy.types.Scene.scenario_uni1
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
