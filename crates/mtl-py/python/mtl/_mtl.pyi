"""Type stubs of the extension module `mtl._mtl` (crates/mtl-py/src); use the package `mtl`."""

from os import PathLike
from typing import Any, Callable, Optional, Sequence, Tuple, Union

__version__: str

class Encoder:
    def __init__(
        self,
        model: Optional[str] = None,
        revision: Optional[str] = None,
        backend: str = "flex",
        quantize: Optional[str] = None,
        device: int = 0,
    ) -> None: ...
    def encode(
        self,
        texts: Sequence[Union[str, bytes]],
        batch_size: int = 32,
        normalize: Optional[bool] = None,
        pooling: Optional[str] = None,
    ) -> Tuple[bytearray, int, int]: ...
    @property
    def dim(self) -> int: ...
    @property
    def max_seq_length(self) -> int: ...
    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None: ...
    @property
    def pooling(self) -> str: ...
    @property
    def normalize(self) -> bool: ...
    @property
    def model_dir(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def precision(self) -> str: ...

class Classifier:
    def __init__(
        self,
        model: Union[str, PathLike[str]],
        backend: str = "flex",
        quantize: Optional[str] = None,
        device: int = 0,
    ) -> None: ...
    def predict_proba(
        self,
        texts: Sequence[Any],
        task: Optional[str] = None,
        batch_size: int = 32,
        pairs: bool = False,
    ) -> list[Tuple[str, list[str], bytearray, int]]: ...
    @property
    def tasks(self) -> list[Tuple[str, list[str]]]: ...
    @property
    def model_dir(self) -> str: ...
    @property
    def precision(self) -> str: ...

def train(
    config: Any,
    resume: bool = False,
    overwrite: bool = False,
    backend: str = "flex",
    device: int = 0,
    progress: Optional[Callable[[str], None]] = None,
) -> str: ...
def set_num_threads(threads: int) -> None: ...
def num_threads() -> int: ...
def backends() -> list[str]: ...
