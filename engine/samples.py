"""The bundled sample photos: real photographs that ship inside installed packages.

They are read from the packages' own files (never fetched), so ``camo-engine protect --samples``
works offline on a fresh install.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# (name, package, file inside the package).  All are natural photographs in colour; grey or
# synthetic images in those packages (camera, text, checkerboards) are left out.
SAMPLES: tuple[tuple[str, str, str], ...] = (
    ("astronaut", "skimage", "data/astronaut.png"),
    ("chelsea", "skimage", "data/chelsea.png"),
    ("coffee", "skimage", "data/coffee.png"),
    ("rocket", "skimage", "data/rocket.jpg"),
    ("motorcycle", "skimage", "data/motorcycle_left.png"),
    ("hubble", "skimage", "data/hubble_deep_field.jpg"),
    ("china", "sklearn", "datasets/images/china.jpg"),
    ("flower", "sklearn", "datasets/images/flower.jpg"),
    ("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)


def sample_paths() -> list[Path]:
    """Paths of the sample photos that are installed (matplotlib's is optional)."""
    paths = []
    for _, package, relative in SAMPLES:
        try:
            path = Path(str(resources.files(package).joinpath(relative)))
        except ModuleNotFoundError:
            continue
        if path.is_file():
            paths.append(path)
    return paths
