"""What a run of the study is told: protocol, seed, scale and folders."""
import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What the common flags decide for a whole run; library functions take this,
    never the argparse namespace."""
    protocol: object            # data.Protocol
    seed: int
    quick: bool = False
    data_dir: Path = None
    results_dir: Path = Path("results")
    models_dir: Path = Path("models")
