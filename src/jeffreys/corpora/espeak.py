"""A minimal ctypes binding of libespeak-ng (from the ``espeakng-loader`` wheel).

Only what the embedded corpus needs: initialise on a private copy of the voice data,
select ``language+variant`` voices, set rate/pitch/range, synthesise text to int16 samples
through the synchronous callback API (``speak_lib.h``).

libespeak-ng keeps global state (one synthesiser per process) and some of it (waveform
phase, flutter index) carries over from one utterance to the next, even across
``espeak_Terminate``/``espeak_Initialize``. Output is therefore reproducible only for the
same sequence of calls in a fresh process: callers that need bit-exact audio run each unit
of work in a new process (see ``jeffreys.corpora.synth``).
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import numpy as np

from ..errors import InputError

# speak_lib.h constants
AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
EE_OK, EE_NOT_FOUND = 0, 2
RATE, VOLUME, PITCH, RANGE, WORDGAP = 1, 2, 3, 4, 7
PHONEMES_MBROLA = 0x10  # espeak_SetPhonemeTrace: write .pho data, do not drive mbrola

VARIANT_DIR = Path("voices") / "!v"


class _Event(ctypes.Structure):
    # espeak_EVENT; only the layout matters (events are not read)
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def packaged_data_dir() -> Path:
    from ..extras import require

    espeakng_loader = require("espeakng_loader", "the embedded corpus")
    return Path(espeakng_loader.get_data_path())


def espeak_version() -> str:
    """Version of the espeakng-loader wheel (it fixes libespeak-ng and its voice data)."""
    from importlib.metadata import version

    return f"espeakng-loader {version('espeakng-loader')}"


def private_data_dir(dst: str | Path, language: str, variants: dict[str, str]) -> Path:
    """A private ``espeak-ng-data`` under ``dst`` for one language, whose ``voices/!v``
    holds only ``variants`` (name -> variant file body); the rest links to the wheel's
    read-only data (phoneme tables, intonation, language definitions, dictionaries).

    Only the given variants: espeak-ng lists at most a few hundred voice files, and a
    variants dir with every speaker of a corpus would push real languages off that list.
    """
    src = packaged_data_dir()
    out = Path(dst) / "espeak-ng-data"
    (out / VARIANT_DIR).mkdir(parents=True)
    # en_dict too: espeak-ng loads English at initialisation, and reads Latin-script
    # foreign words with it
    for name in dict.fromkeys(("phontab", "phonindex", "phondata", "intonations", "lang", "en_dict", f"{language}_dict")):
        if (src / name).exists():
            _link(src / name, out / name)
    for entry in (src / "voices").iterdir():
        if entry.name != VARIANT_DIR.name:
            _link(entry, out / "voices" / entry.name)
    for name, body in variants.items():
        write_variant(out, name, body)
    return out


def write_variant(data_dir: str | Path, name: str, body: str) -> Path:
    """Write voice variant ``name`` (selected as ``LANG+name``) into a private data dir."""
    if not name or "/" in name or "+" in name or any(c.isspace() for c in name):
        raise InputError(f"invalid voice variant name {name!r}")
    path = Path(data_dir) / VARIANT_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"language variant\nname {name}\n{body}", encoding="utf-8")
    return path


def _link(src: Path, dst: Path) -> None:
    try:
        dst.symlink_to(src, target_is_directory=src.is_dir())
    except OSError:  # no symlinks (some file systems): copy
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


class Espeak:
    """The process's espeak-ng synthesiser, initialised on ``data_dir`` (one per process)."""

    _instance: Espeak | None = None

    def __init__(self, data_dir: str | Path, library: str | Path | None = None):
        """``library``: another libespeak-ng (its dependencies loaded beforehand), e.g.
        Debian's, built with MBROLA support (:mod:`jeffreys.corpora.mbrola`); default the
        ``espeakng-loader`` wheel's."""
        if library is None:
            from ..extras import require

            library = require("espeakng_loader", "the embedded corpus").get_library_path()
        self.data_dir = Path(data_dir)
        lib = ctypes.CDLL(str(library))
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        # espeak-ng >= 1.52; older libraries (Debian's 1.51, used for MBROLA voices) draw
        # their noise from a fixed-start generator
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: C holds the pointer
        # callback every 500 ms of audio (default 60 ms: the Python callback dominated);
        # path is the espeak-ng-data dir itself
        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 500, str(self.data_dir).encode(), 0)
        if self.sample_rate <= 0:
            raise InputError(f"{self.data_dir}: espeak-ng could not be initialised with this voice data")
        lib.espeak_SetSynthCallback(self._callback)
        self.version = lib.espeak_Info(None).decode()

    @classmethod
    def get(cls, data_dir: str | Path, library: str | Path | None = None) -> Espeak:
        """The process-wide instance; espeak-ng cannot be re-pointed at other data."""
        if cls._instance is None:
            cls._instance = cls(data_dir, library)
        elif cls._instance.data_dir != Path(data_dir):
            raise RuntimeError(
                f"espeak-ng already initialised on {cls._instance.data_dir} in this process; "
                "synthesise from another voice data dir in a fresh process"
            )
        return cls._instance

    def _collect(self, wav, n, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def voice_sample_rate(self) -> int:
        """Sample rate of what :meth:`synth` returns (an MBROLA renderer answers its database's)."""
        return self.sample_rate

    def set_voice(self, voice: str) -> None:
        """Select ``LANG`` or ``LANG+VARIANT``. espeak-ng silently ignores an unknown
        variant, so its file is checked here."""
        lang, _, variant = voice.partition("+")
        if variant and not (self.data_dir / VARIANT_DIR / variant).is_file():
            raise InputError(f"voice variant {variant!r} not found in {self.data_dir / VARIANT_DIR}")
        if self._lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise InputError(f"espeak-ng has no voice for language {lang!r} (voice {voice!r})")

    def synth(self, text: str, *, rate: int = 175, pitch: int = 50, pitch_range: int = 50,
              wordgap: int = 0, seed: int = 0) -> np.ndarray:  # fmt: skip
        """int16 samples at ``self.sample_rate`` of ``text`` in the current voice.

        rate: words per minute (80-450); pitch, pitch_range: 0-100 (50 = the voice's own);
        wordgap: extra pause between words in units of 10 ms; seed: espeak's noise RNG.
        """
        lib = self._lib
        for param, value in ((RATE, rate), (PITCH, pitch), (RANGE, pitch_range), (WORDGAP, wordgap)):
            if lib.espeak_SetParameter(param, int(value), 0) != EE_OK:
                raise InputError(f"espeak-ng refused parameter {param} = {value}")
        if self._set_seed is not None:
            self._set_seed(int(seed))
        self._chunks = []
        data = text.encode("utf-8")
        status = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        if status != EE_OK:
            raise InputError(f"espeak-ng failed (status {status}) on text {text[:60]!r}")
        if not self._chunks:
            return np.zeros(0, np.int16)
        return np.concatenate(self._chunks)

    def pho(self, text: str, **prosody) -> str:
        """The MBROLA input (.pho: phonemes, durations, pitch points) that espeak-ng makes of
        ``text`` in the current ``mb-*`` voice, with :meth:`synth`'s prosody options, instead
        of sound: "" when the voice is not an MBROLA one. Needs a libespeak-ng built with
        MBROLA support and glibc (the trace goes to an ``open_memstream``)."""
        libc = ctypes.CDLL(None)
        libc.open_memstream.restype = ctypes.c_void_p
        libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.free.argtypes = [ctypes.c_void_p]
        trace = self._lib.espeak_SetPhonemeTrace
        trace.argtypes = [ctypes.c_int, ctypes.c_void_p]
        buf, size = ctypes.c_void_p(), ctypes.c_size_t()
        stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
        if not stream:
            raise InputError("espeak-ng: cannot open a memory stream for the .pho output")
        try:
            trace(PHONEMES_MBROLA, stream)
            self.synth(text, **prosody)
        finally:
            trace(0, None)
            libc.fclose(stream)  # sets buf and size
        try:
            return ctypes.string_at(buf, size.value).decode("latin-1") if buf else ""
        finally:
            libc.free(buf)
