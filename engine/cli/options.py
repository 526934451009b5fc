"""Options shared by several ``camo-engine`` commands, declared once as annotated types.

These are the CLI's reusable argument groups: every command spells and documents them the same
way (Polygraphy's reusable argument groups).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from ..attack import AttackConfig


def parse_level(text: str) -> float:
    """Accept ``0.03`` or ``8/255`` for a pixel-range amount."""
    from ..attack.config import parse_level as level

    try:
        return level(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def allow_pixels(max_pixels: int | None) -> None:
    """Let Pillow open images up to ``max_pixels``: its own process-wide bomb guard (~179 MP)
    would refuse first, and ours (``--max-pixels``) is the one that applies."""
    from PIL import Image

    if max_pixels:
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_pixels)


def parse_list(text: str, kind: type, name: str) -> list:
    """``"95,90,75"`` -> ``[95, 90, 75]``; a bad item is a usage error naming the option."""
    try:
        return [kind(item) for item in text.split(",") if item.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"{name}: {text!r} is not a comma-separated list of {kind.__name__}") from exc


def attack_config(
    strength: str, eps: str | None = None, alpha: str | None = None, alpha_start: str | None = None, **options: Any
) -> AttackConfig:
    """The strength preset's ``AttackConfig`` with the options that were typed (levels like
    ``8/255``; options left at ``None`` keep the preset's value)."""
    from ..attack import strength_config

    return strength_config(
        strength,
        eps=parse_level(eps) if eps else None,
        alpha=parse_level(alpha) if alpha else None,
        alpha_start=parse_level(alpha_start) if alpha_start else None,
        **options,
    )


VictimOpt = Annotated[str, typer.Option("--victim", "-v", help="Victim to fool (see `camo-engine victims`).")]
WeightsOpt = Annotated[Optional[Path], typer.Option(help="Weights file for victims that need one.")]
ThresholdOpt = Annotated[Optional[float], typer.Option(help="Regressors: score that counts as low quality.")]
TargetOpt = Annotated[Optional[float], typer.Option(help="Regressors: L2 attack target beyond the threshold.")]
TopKOpt = Annotated[Optional[int], typer.Option("--top-k", help="Classifiers: the true class must leave the top-k.")]
TargetClassOpt = Annotated[Optional[int], typer.Option("--target-class", help="Classifiers: targeted mode, make this class the top-1.")]
StrengthOpt = Annotated[str, typer.Option(help="low, medium or high: the panel of views to hold under, margin, eps, alpha and steps (docs/strength.md); options below override it.")]
PanelOpt = Annotated[Optional[str], typer.Option(help="Views a photo must hold under: low, medium, high, or a .toml/.json panel file [default: from --strength].")]
ViewsPerStepOpt = Annotated[Optional[int], typer.Option("--views-per-step", help="Views sampled for each step's gradient [default: from --strength].")]
EpsOpt = Annotated[Optional[str], typer.Option(help="L-inf radius of the perturbation, e.g. 8/255 [default: from --strength].")]
AlphaOpt = Annotated[Optional[str], typer.Option(help="Sign-step size, e.g. 1/255 [default: from --strength].")]
MomentumOpt = Annotated[Optional[float], typer.Option(help="MI-FGSM momentum of the step direction (0: plain I-FGSM); see benchmarks/NOTES.md [default: 0.5].")]
BlurSigmaOpt = Annotated[Optional[float], typer.Option("--blur-sigma", help="Gaussian blur (pixels) of the gradient before the step, as in TI-FGSM (0: off) [default: 1].")]
AlphaStartOpt = Annotated[Optional[str], typer.Option("--alpha-start", help="A larger first step (e.g. 2/255) falling to --alpha over the first quarter of the steps: fewer steps, lower PSNR.")]
StepsOpt = Annotated[Optional[int], typer.Option(help="Maximum I-FGSM steps per photo [default: from --strength].")]
JpegOpt = Annotated[int, typer.Option("--jpeg-quality", help="JPEG quality of the re-encode that verdicts are judged after (and of JPEG output).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Photos attacked together.")]
SeedOpt = Annotated[int, typer.Option(help="Seed; the same seed gives identical output bytes.")]
BackendOpt = Annotated[str, typer.Option(help="Gradient backend: torch (autograd) or onnxruntime (exported gradient graph).")]
ProvidersOpt = Annotated[Optional[str], typer.Option(help="onnxruntime: execution providers in order, e.g. CUDAExecutionProvider,CPUExecutionProvider.")]
FallbackOpt = Annotated[bool, typer.Option("--provider-fallback", help="onnxruntime: fall back to the CPU when a named provider is unavailable (else it is an error).")]
OnnxCacheOpt = Annotated[
    Optional[Path],
    typer.Option(help="onnxruntime: where exported graphs are cached [default: $XDG_CACHE_HOME or ~/.cache, then camo-engine/onnx].")
]
PrecisionOpt = Annotated[str, typer.Option(help="fp32, or bf16 autocast for the attack steps (verdicts stay fp32).")]
DeviceOpt = Annotated[str, typer.Option(help="Compute device; only cpu is supported.")]
EnhanceOpt = Annotated[Optional[str], typer.Option(help="Enhancers to apply, chained: e.g. pillow,dhe (see `camo-engine enhancers`).")]
ThroughOpt = Annotated[bool, typer.Option("--through", help="Attack through the (differentiable) enhancer instead of enhancing first.")]


def backend_for(victim: str, backend: str, given: bool) -> str:
    """The backend to run ``victim`` on: an ONNX-file victim (``onnx:PATH``) needs onnxruntime,
    which is picked, with a one-line notice, unless the user asked for ``--backend torch``."""
    if not victim.startswith("onnx:") or backend != "torch":
        return backend
    if given:
        raise typer.BadParameter(
            f"--victim {victim} is an ONNX file, which torch autograd cannot run: use --backend "
            "onnxruntime (the default for ONNX files) or drop --backend"
        )
    from .console import stderr

    stderr.print(f"camo-engine: --victim {victim} runs on --backend onnxruntime (picked for an ONNX file)")
    return "onnxruntime"


def backend_options(backend: str, precision: str, providers: str | None, fallback: bool, cache: Path | None) -> dict:
    """Options for :func:`camo_engine.backends.make_backend` from the shared CLI options."""
    if backend == "onnxruntime":
        if precision != "fp32":
            raise ValueError("--precision bf16 is for the torch backend; onnxruntime graphs are fp32")
        chosen = providers.split(",") if providers else None
        return {"cache_dir": cache, "providers": chosen, "fallback": fallback}
    if providers or fallback:
        raise ValueError("--providers/--provider-fallback apply to --backend onnxruntime only")
    return {"precision": precision}


def victim_options(weights, threshold, target, top_k, target_class) -> dict:
    """Victim keyword options from the shared CLI options (unset ones are left out)."""
    return {
        "weights": weights,
        "threshold": threshold,
        "target": target,
        "top_k": top_k,
        "target_class": target_class,
    }
