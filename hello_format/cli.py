"""The ``hello`` command: info, verify, preview, requantize, export-adapter, plus commands that other packages register.

Extra commands come from the entry-point group ``hello.commands`` (``hello eval`` from hello_build)
and from ``hello_format.hub.cli`` (push, pull); both are imported only when needed, so ``hello info``
never loads huggingface_hub or the builder. Any HelloError ends the
command with ``error: <message>`` on stderr and exit status 2; Ctrl-C ends it with status 130, as
shells expect of an interrupted command.
"""

import contextlib
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import signal
import sys
import warnings
from typing import NoReturn

import click
from PIL import Image

from hello_format import __version__
from hello_format.augment import SETTINGS, unknown_settings
from hello_format.bits_per_class import bits_per_class
from hello_format.bundle import Bundle
from hello_format import calibration
from hello_format.calibration import CalibrationConfig
from hello_format.errors import HelloError
from hello_format.files import atomic_target, missing_folder, replace_refusal, same_file
from hello_format.generator import DELTA_GROUP_SIZE, EncoderLoraConfig, HeadConfig
from hello_format.hub.resolver import open_bundle
from hello_format.limits import MAX_GROUP_SIZE
from hello_format.peft_keys import adapted_module, peft_module
from hello_format.quantize import DELTA_DTYPES, is_quantised, storage_text
from hello_format.text import cut, human_bytes, listed, os_error_line, shortened, terminal, warn, warning_line

ENTRY_POINT_GROUP = "hello.commands"
HUB_MODULE = "hello_format.hub.cli"
INTERRUPTED = 128 + signal.SIGINT


class CommandError(click.ClickException):
    """A one-line ``error: ...`` on stderr with exit status 2."""
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {one_line(self.message)}", err=True)


def one_line(text: str) -> str:
    """A message as one terminal-safe line (control characters and newlines escaped)."""
    return terminal(str(text))


def one_line_warnings() -> None:
    """Show this process's warnings as one terminal-safe line each (Python's own format adds the source
    line that raised it, and a path into the library): for the commands, which own their process."""
    warnings.formatwarning = lambda message, *args, **kwargs: warning_line(message) + "\n"


def echo(*lines: str) -> None:
    """Print lines built from a file's strings, each as one line: every control character escaped, a
    newline too (a file's string must not start a line of its own)."""
    for line in lines:
        click.echo(terminal(str(line)))


def _module_exists(name: str) -> bool:
    """Whether a module can be found, without importing it (its parent packages are imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Registered extra commands whose module is installed (a missing module means no command)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            if _module_exists(ep.module)}


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> click.Command:
    """The command behind an entry point; a module that fails to import is reported, not skipped."""
    try:
        command = ep.load()
    except Exception as exc:
        raise CommandError(f"command '{ep.name}' ({ep.value}) failed to load: {type(exc).__name__}: {exc}") from exc
    if not isinstance(command, click.Command):
        raise CommandError(f"entry point '{ep.name}' ({ep.value}) is not a click command")
    return command


def _hub_commands() -> dict[str, click.Command]:
    """The click commands defined in hello_format.hub.cli (imported on first use)."""
    try:
        module = importlib.import_module(HUB_MODULE)
    except Exception as exc:
        raise CommandError(f"{HUB_MODULE} failed to load: {type(exc).__name__}: {exc}") from exc
    return {obj.name: obj for obj in vars(module).values()
            if isinstance(obj, click.Command) and getattr(obj.callback, "__module__", None) == HUB_MODULE}


def exit_interrupted(hint: str | None = None) -> NoReturn:
    """End a command that Ctrl-C interrupted with the shell's status 130 (click's own answer is 1);
    ``hint``: what the user can do next, on the same line."""
    click.echo("\ninterrupted" + (f": {hint}" if hint else ""), err=True)
    sys.exit(INTERRUPTED)


class OneLineUsage:
    """A click command (mixed in before ``click.Command`` or ``click.Group``) whose usage errors, its own
    or a subcommand's, are one ``error: ...`` line naming where help is, not click's three lines."""

    def make_context(self, info_name, args, parent=None, **extra):
        with _usage_in_one_line():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        with _usage_in_one_line():
            return super().invoke(ctx)


@contextlib.contextmanager
def _usage_in_one_line():
    """click's usage errors raised inside as one CommandError line (the help that click >= 8.2 shows for a
    command given no arguments excepted)."""
    try:
        yield
    except click.UsageError as exc:
        if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):   # shows the help (click >= 8.2)
            raise
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        raise CommandError(exc.format_message() + where) from exc


class HelloGroup(OneLineUsage, click.Group):
    """A click group that finds plugin commands lazily and turns HelloError into one line."""

    def list_commands(self, ctx) -> list[str]:
        names = set(self.commands) | set(_entry_points())
        try:
            names |= set(_hub_commands())
        except CommandError as exc:
            click.echo(f"warning: {exc.message}", err=True)
        return sorted(names)

    def get_command(self, ctx, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        ep = _entry_points().get(name)
        if ep is not None:
            return _load_entry_point(ep)
        return _hub_commands().get(name)

    def format_commands(self, ctx, formatter) -> None:
        # a broken plugin is reported once and left out of the help, the rest still shows
        rows = []
        for name in self.list_commands(ctx):
            try:
                command = self.get_command(ctx, name)
            except CommandError as exc:
                click.echo(f"warning: {exc.message}", err=True)
                continue
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HelloError as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            exit_interrupted()


@click.group(cls=HelloGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hello (hello-distill)")
def cli() -> None:
    """Read, check, preview, evaluate, convert and publish .hello label-light distilled dataset bundles."""
    # what a file's images make Pillow warn about is the reader's to check and say in one line (spec 14):
    # its decompression-bomb warning comes after the manifest's bounded size is checked, and the others
    # (a palette with byte transparency, a malformed MPO) concern what the reader converts or ignores
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    one_line_warnings()


def _encoder_lora_size(bundle: Bundle) -> dict:
    """The encoder LoRA's adapted modules and parameters, counted on the stored (logical) shapes."""
    shapes = bundle.lora_shapes()   # a ViT attention's in-projection and out_proj pairs are one module's, as peft adapts it
    modules = {adapted_module(peft_module(key)[0]) for key in shapes}   # every key a peft one: checked on open
    return {"modules": len(modules), "parameters": sum(math.prod(shape) for shape in shapes.values())}


def _summary(bundle: Bundle) -> list[str]:
    m = bundle.manifest
    images, base, recipe = m["images"], m["base"], m["recipe"]
    lora, head = EncoderLoraConfig.from_manifest(m["lora"]), HeadConfig.from_manifest(m["head"])
    names = ", ".join(bundle.class_names[:8]) + (", ..." if bundle.num_classes > 8 else "")
    quality = f" (quality {images['quality']})" if images["quality"] is not None else ""
    tag = f" ({cut(base['pretrained'])})" if base["pretrained"] else ""
    if base.get("embedded") == "visual":
        tag += ", image tower + stored head"
    lines = [
        f"file: {bundle.path}",
        f"format: hello {m['format_version']}",
        f"classes: {bundle.num_classes} ({names})",
        f"images: {bundle.num_images} (ipc {bundle.ipc}), {images['channels']}x{images['height']}x{images['width']}, "
        f"codec {images['codec']}{quality}",
        f"base: {base['source']} {cut(base['architecture'])}{tag}, image size {base['image_size']}, {base['fingerprint'][:19]}...",
    ]
    if lora is None:
        lines.append("encoder LoRA: none")
    else:
        pattern = f", rank_pattern {shortened(lora.rank_pattern, 120)}" if lora.rank_pattern else ""
        size = _encoder_lora_size(bundle)
        lines.append(f"encoder LoRA: r {lora.r}, alpha {lora.lora_alpha}{pattern}, {size['modules']} "
                     f"modules, {size['parameters']:,} parameters, {storage_text(lora)}")
    head_lora = head.lora
    head_text = "none" if head_lora is None else f"r {head_lora.r}, alpha {head_lora.lora_alpha}, {storage_text(head_lora)}"
    templates = f"{len(head.templates)} template{'s' if len(head.templates) != 1 else ''}"
    lines.append(f"head: {templates}, logit scale {head.logit_scale:.6g}, LoRA {head_text}")
    if head.prior_weight:
        lines.append(f"labels: (1 - {head.prior_weight:g}) x projector + {head.prior_weight:g} x zero-shot projector "
                     "(the base and text head without deltas; format 2.0 prior_mix)")
    lines.append(f"recipe: loss {recipe['loss']}, temperature {recipe['temperature']}, beta {recipe['beta']}, "
                 f"{recipe['epochs']} epochs, batch {recipe['batch_size']}, {cut(recipe['optimizer'])} lr {recipe['lr']} "
                 f"wd {recipe['weight_decay']}")
    augment = {key: value for key, value in recipe["augment"].items() if key in SETTINGS}   # checked on open
    unknown = unknown_settings(recipe["augment"])
    lines.append(f"augment: {json.dumps(augment, sort_keys=True)}"
                 + (f", and {len(unknown)} setting(s) this reader does not know: {listed(unknown)}" if unknown else ""))
    s = bundle.storage()
    lines += [
        "storage:",
        f"  images and labels      {human_bytes(s.images_bytes)}",
        f"  label generator        {human_bytes(s.label_generator_bytes)} (encoder + head LoRA)",
        f"  base (embedded)        {human_bytes(s.base_bytes)}",
        f"  header and manifest    {human_bytes(s.header_bytes)}",
        *([f"  other tensors          {human_bytes(s.other_bytes)} (not of this format version)"] if s.other_bytes else []),
        f"  file                   {human_bytes(s.file_bytes)}",
        f"  stored soft labels     {human_bytes(s.stored_label_bytes)} (N x epochs x C x 2 bytes, SRe2L/FKD): {s.versus()}",
    ]
    bpc = bits_per_class(bundle)
    with_base = "unknown" if bpc.with_base is None else f"{bpc.with_base:,.0f}"
    lines += [
        "bits per class (DD-RUO):",
        f"  images + generator     {bpc.without_base:,.0f}",
        f"  + the base             {with_base} ({bpc.base_counted})",
        f"  images + stored labels {bpc.stored_labels:,.0f}",
    ]
    return lines


@cli.command()
@click.argument("bundle_path", metavar="BUNDLE")
@click.option("--json", "as_json", is_flag=True,
              help="Print the path, manifest, encoder LoRA size, storage breakdown and bits per class as one line of JSON (pipe it to jq to read it).")
def info(bundle_path: str, as_json: bool) -> None:
    """Show classes, images, base model, LoRA ranks, recipe and the storage breakdown."""
    with open_bundle(bundle_path) as bundle:
        if as_json:
            document = {"path": str(bundle.path), "manifest": bundle.manifest,
                        "encoder_lora": _encoder_lora_size(bundle), "storage": dataclasses.asdict(bundle.storage()),
                        "bits_per_class": dataclasses.asdict(bits_per_class(bundle))}
            # unindented: indentation costs a file's nested lists up to 64 spaces per value (33x the file)
            echo(json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False))
        else:
            echo(*_summary(bundle))


@cli.command()
@click.argument("bundle_path", metavar="BUNDLE")
@click.option("--no-decode", is_flag=True, help="Skip decoding every image (hashes only).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as one line of JSON (ok, path, format_version, images, tensors, images_decoded); "
                   "a file that fails is still one error line on stderr and exit status 2.")
def verify(bundle_path: str, no_decode: bool, as_json: bool) -> None:
    """Check the header, manifest (schema, version), every sha256 and that every image decodes."""
    with open_bundle(bundle_path, verify=True) as bundle:
        if not no_decode:
            bundle.check_images()   # a chunk at a time: all at once was 7.5 GB at ImageNet-1K IPC 50
        if as_json:
            echo(json.dumps({"ok": True, "path": str(bundle.path), "format_version": bundle.manifest["format_version"],
                             "images": bundle.num_images, "tensors": len(bundle.tensor_names),
                             "images_decoded": not no_decode}, separators=(",", ":"), ensure_ascii=False))
            return
        decoded = "" if no_decode else ", all images decode"
        echo(f"ok: {bundle.path}: format {bundle.manifest['format_version']}, {bundle.num_images} images, "
             f"{len(bundle.tensor_names)} tensors, all sha256 match, label generator finite{decoded}")


def bounded_range(bounds: tuple, *, above_low: bool, integer: bool) -> click.ParamType:
    """A command-line range for a table's ``(low, high)``: an open low when ``above_low``."""
    kind = click.IntRange if integer else click.FloatRange
    return kind(*bounds, min_open=above_low)


def _calibration_range(name: str) -> click.ParamType:
    """--calibration-NAME's range: ``CalibrationConfig``'s bounds (``calibration.BOUNDS``)."""
    return bounded_range(calibration.BOUNDS[name], above_low=name in calibration.ABOVE_LOW,
                         integer=isinstance(getattr(CalibrationConfig, name), int))


base_checkpoint_option = click.option(
    "--base-checkpoint", type=click.Path(exists=True, dir_okay=False),
    help="Local safetensors weights of the base: needed where the bundle's base is a local checkpoint; for an "
         "open_clip base, used instead of downloading its tag (offline), once the fingerprint matches.")
allow_remote_base_option = click.option(
    "--allow-remote-base", is_flag=True,
    help="Trust a custom base config that makes open_clip download or build a model the bundle names "
         "(e.g. text_cfg.hf_model_name); refused by default.")


@cli.command()
@click.argument("source", metavar="IN")
@click.argument("target", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--delta-dtype", required=True, type=click.Choice(list(DELTA_DTYPES)),
              help="How OUT stores the LoRA and head deltas: fp16, or int8 / int4 with one fp16 scale per group.")
@click.option("--group-size", default=DELTA_GROUP_SIZE, show_default=True, type=click.IntRange(1, MAX_GROUP_SIZE),
              help="Values per scale of int8/int4 deltas.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (also when OUT is IN).")
@click.option("--allow-upcast", is_flag=True,
              help="Store int8/int4 deltas in a wider dtype: OUT then holds their dequantised values.")
@click.option("--calibration-steps", default=0, show_default=True, type=_calibration_range("steps"),
              help=f"{calibration.HELP['steps']} Here 0 by default (the builder's: {CalibrationConfig.steps}); "
                   "calibrating builds the projector, so the base must be at hand (embedded, cached, or --base-checkpoint).")
@click.option("--calibration-objective", default=CalibrationConfig.objective, show_default=True,
              type=click.Choice(calibration.OBJECTIVES), help=calibration.HELP["objective"])
@click.option("--calibration-lr", default=CalibrationConfig.lr, show_default=True,
              type=_calibration_range("lr"), help=calibration.HELP["lr"])
@click.option("--calibration-batch-size", default=CalibrationConfig.batch_size, show_default=True,
              type=_calibration_range("batch_size"), help=calibration.HELP["batch_size"])
@click.option("--calibration-selection-views", default=CalibrationConfig.selection_views, show_default=True,
              type=_calibration_range("selection_views"), help=calibration.HELP["selection_views"])
@click.option("--calibration-check-every", default=CalibrationConfig.check_every, show_default=True,
              type=_calibration_range("check_every"), help=calibration.HELP["check_every"])
@click.option("--quiet", is_flag=True, help="No progress bar.")
@base_checkpoint_option
@allow_remote_base_option
def requantize(source: str, target: str, delta_dtype: str, group_size: int, overwrite: bool, allow_upcast: bool,
               calibration_steps: int, calibration_objective: str, calibration_lr: float, calibration_batch_size: int,
               calibration_selection_views: int, calibration_check_every: int, quiet: bool, base_checkpoint: str | None,
               allow_remote_base: bool) -> None:
    """Rewrite bundle IN (a path or hf:// URI) as OUT with its deltas stored as --delta-dtype (images,
    base, recipe and everything else as they are), without rebuilding."""
    from hello_format.requantize import requantize as run

    if not calibration_steps:
        warn_unused("requantize without --calibration-steps", lambda name: name != "calibration_steps" and (
            name.startswith("calibration_") or name in ("base_checkpoint", "allow_remote_base")))
    if not is_quantised(DELTA_DTYPES[delta_dtype]):
        warn_unused(f"requantize to {delta_dtype}", lambda name: name == "group_size")
    config = (CalibrationConfig(steps=calibration_steps, objective=calibration_objective, lr=calibration_lr,
                                batch_size=calibration_batch_size, selection_views=calibration_selection_views,
                                check_every=calibration_check_every)
              if calibration_steps else None)
    done = run(source, target, DELTA_DTYPES[delta_dtype], group_size, overwrite=overwrite, allow_upcast=allow_upcast,
               calibration=config, checkpoint=base_checkpoint, allow_remote_base=allow_remote_base,
               progress=not quiet)
    group = f" (group size {group_size})" if is_quantised(done.after) else ""
    note = "; the deltas are the dequantised values of IN's" if any(is_quantised(d) for d in done.before) else ""
    echo(f"wrote {done.path}: deltas {'/'.join(done.before) or 'none'} -> {done.after}{group}{note}; label generator "
         f"{human_bytes(done.generator_bytes_before)} -> {human_bytes(done.generator_bytes_after)}")
    if done.calibration is not None:
        report = done.calibration
        steps = f"{report['steps']} step{'s' * (report['steps'] != 1)}"   # not "1 steps"
        echo(f"calibrated {steps} ({report['objective']}): top-1 agreement with the float projector "
             f"on {report['views']} selection views {report['agreement_rounded']:.1%} (rounded) -> {report['agreement']:.1%}")


@cli.command()
@click.argument("bundle_path", metavar="BUNDLE")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Image file to write; its extension picks the format (.png, .jpg, .webp, ...).")
@click.option("--per-class", default=10, show_default=True, type=click.IntRange(min=1), help="Images per class.")
@click.option("--max-classes", default=100, show_default=True, type=click.IntRange(min=1),
              help="Show only the first N classes.")
@click.option("--top-k", default=2, show_default=True, type=click.IntRange(min=1),
              help="Caption each image with the projector's K most probable classes.")
@click.option("--no-labels", is_flag=True, help="Class names only: do not build the projector.")
@click.option("--overwrite", is_flag=True, help="Replace the image file if it exists.")
@base_checkpoint_option
@allow_remote_base_option
def preview(bundle_path: str, output: str, per_class: int, max_classes: int, top_k: int, no_labels: bool,
            overwrite: bool, base_checkpoint: str | None, allow_remote_base: bool) -> None:
    """Render a grid of the bundle's images, one row per class with its name, each image captioned
    with the projector's top-k labels (when the bundle's base can be created here)."""
    from hello_format.hub.preview import first_per_class, render_grid, sheet_refusal, sheet_size

    if no_labels:
        warn_unused("preview --no-labels", lambda name: name in ("top_k", "base_checkpoint", "allow_remote_base"))
    try:   # before the bundle is read or a projector built
        image_format = _image_format(output)
    except ValueError as exc:
        raise CommandError(f"cannot write {output}: {exc}") from None
    missing = missing_folder(output)
    if missing:
        raise CommandError(f"cannot write {output}: {missing}")
    if same_file(output, bundle_path):
        raise CommandError(f"cannot write {output}: it is the bundle being previewed; name another image file")
    refusal = replace_refusal(output, overwrite)
    if refusal:
        raise CommandError(refusal)
    with open_bundle(bundle_path, verify=True) as bundle:
        labels, num_classes = bundle.labels, bundle.num_classes
        top_k = min(top_k, num_classes)   # what a caption can show
        classes_shown = min(max_classes, num_classes)
        shown = first_per_class(labels, classes_shown, per_class)
        # before anything is decoded or labelled: 1,000 classes made a sheet JPEG cannot hold, found only
        # once it was drawn ("broken data stream"), or gigabytes of one (224-px images)
        width, height = sheet_size(bundle.image_shape, labels[shown], bundle.class_names[:max_classes],
                                   per_class=per_class, caption_lines=0 if no_labels else top_k)
        refusal = sheet_refusal(width, height, image_format, at_most=not no_labels)
        if refusal:
            captioned = "" if no_labels else f" with top-{top_k} captions (none with --no-labels)"
            raise CommandError(f"cannot write {output}: {refusal}{captioned}: pass a smaller --max-classes "
                               f"(here {classes_shown:,} of {num_classes:,} "
                               "classes) or --per-class")
        images = bundle.images(indices=shown)   # the shown ones only: a 10,000-image bundle shows 200
        captions = None if no_labels else _projector_captions(bundle, images, top_k, base_checkpoint,
                                                              allow_remote_base)
        grid = render_grid(images, labels[shown], bundle.class_names[:max_classes], captions=captions,
                           per_class=per_class)
    try:
        with atomic_target(output) as temp:   # a failed write leaves no half image, and an old one whole
            grid.save(temp, format=image_format)
    except ValueError as exc:
        raise CommandError(f"cannot write {output}: {exc}") from None
    except OSError as exc:   # its strerror: the message names the hidden temp file
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
    labelled = f", projector top-{top_k} under each image" if captions is not None else ""
    classes = f", the first {classes_shown:,} of {num_classes:,} classes" if classes_shown < num_classes else ""
    empty = classes_shown - len(set(labels[shown].tolist()))   # rows render_grid skips
    if empty:
        classes += f", no row for {empty:,} {'class' if empty == 1 else 'classes'} without images"
    echo(f"wrote {output} ({grid.width}x{grid.height}{classes}{labelled})")


def _image_format(output: str) -> str:
    """Pillow's format for ``output``'s extension (the temp file it is written to has none); a format
    Pillow only reads (.psd) is refused as an unknown one."""
    extension = os.path.splitext(output)[1].lower()
    fmt = Image.registered_extensions().get(extension)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"Pillow cannot write image files of extension {extension!r}: use e.g. .png")
    return fmt


def warn_unused(what: str, unused) -> None:
    """One warning naming the options given on the command line that ``what`` does not use (``unused(name)``
    says of each parameter's name): none is dropped unsaid, as hello eval says of its inputs."""
    context = click.get_current_context()
    given = [param.opts[0] for param in context.command.params if unused(param.name)
             and context.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE]
    if given:
        warn(f"{what} does not use {' or '.join(given)}")


def _projector_captions(bundle: Bundle, images, top_k: int, checkpoint: str | None,
                        allow_remote_base: bool) -> list[str] | None:
    """The projector's top-k captions, or None after one warning line when it cannot be built."""
    from hello_format.hub.preview import projector_captions

    try:
        return projector_captions(bundle, images, top_k, checkpoint=checkpoint, allow_remote_base=allow_remote_base)
    except (HelloError, OSError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        click.echo(f"warning: no projector labels, showing class names only: {one_line(reason)}", err=True)
        return None


@cli.command("export-adapter")
@click.argument("bundle_path", metavar="BUNDLE")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder to write (new or empty).")
@click.option("--overwrite", "--force", "overwrite", is_flag=True,
              help="Replace the output folder even when it is not empty (--force: its earlier name).")
@base_checkpoint_option
@allow_remote_base_option
def export_adapter(bundle_path: str, output: str, overwrite: bool, base_checkpoint: str | None,
                   allow_remote_base: bool) -> None:
    """Write the label generator as a peft adapter folder (adapter_config.json,
    adapter_model.safetensors) with the head beside it (hello_head.safetensors)."""
    from hello_format.adapter import check_target, export_adapter as export

    check_target(output, overwrite)   # before the bundle is read and verified
    with open_bundle(bundle_path, verify=True) as bundle:
        files = export(bundle, output, overwrite=overwrite, checkpoint=base_checkpoint,
                       allow_remote_base=allow_remote_base)
    echo(f"wrote {output}: {', '.join(file.name for file in files)} "
         "(peft: PeftModel.from_pretrained(clip_model.visual, folder))")


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="hello")
    except OSError as exc:   # the output (--help's too) on a full disk, say; click ends a closed pipe itself
        error = CommandError(os_error_line(exc))
        error.show()
        sys.exit(error.exit_code)


if __name__ == "__main__":
    sys.exit(main())
