"""SUVbw scale factors from PET DICOM header values (QIBA SUV recipe, with the vendor rules).

SUVbw (g/ml) = activity concentration (Bq/ml) x body weight (g) / injected dose (Bq), with the dose
decayed to the time the image values are decay-corrected to. :func:`suvbw_factors` returns, per
instance (slice), the factor that turns its rescaled voxel values (stored x RescaleSlope + RescaleIntercept,
as SimpleITK returns them) into SUVbw. Header values come as plain mappings keyed by DICOM keyword (as
:func:`~DualDINOv3Lib.data.dicom_header.read_pet_header` returns them, or from JSON): strings as in the
file or numbers.

Rules, by Units (0054,1001):

- ``GML``: already SUV, factor 1.
- ``BQML``: ``weight_g / (dose x 2^(-t / half_life))``. DecayCorrection (0054,1102) ``START``: ``t`` runs from
  the injection to the scan start, which is the Series date/time, unless that is later than the earliest
  Acquisition date/time (a series made after the scan, e.g. re-reconstructed): then the GE private scan
  date/time (0009,xx0D, ``GEMS_PETD_01``) if present, else the earliest acquisition date/time (Siemens and
  others). ``ADMIN``: values are corrected to the injection, ``t = 0``. ``NONE``: values are the mean
  activity over each frame, so each slice gets ``t`` = its acquisition start and the factor is multiplied
  by ``lambda x D / (1 - exp(-lambda x D))`` for its frame duration ``D`` (``lambda = ln 2 / half_life``).
- ``CNTS`` (Philips): the private SUV scale factor (7053,1000), else the private activity concentration
  scale factor (7053,1009, counts -> Bq/ml) times the ``BQML`` factor. Philips private factors are
  ignored when Units is ``BQML``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import DataError
from .dicom_header import PET_HEADER_TAGS

log = logging.getLogger("dualdinov3.suv")

DECAY_CORRECTIONS = ("START", "ADMIN", "NONE")
UNITS = {"BQML": "Bq/ml", "CNTS": "counts", "GML": "SUV"}
MIN_PLAUSIBLE_DOSE_BQ = 1e6
"""Below 1 MBq an injected PET dose is implausible; such values are usually MBq written where Bq belongs."""

_FIX = "convert the PET to SUV with your vendor workstation, or pass a NIfTI/NRRD already in SUV"


@dataclass(frozen=True)
class SUVbwFactors:
    """The result of :func:`suvbw_factors`.

    ``factors``: one per instance, in the order given: SUVbw = rescaled value x factor (g/ml per Bq/ml, per
    count, or 1 for GML). ``units``: the header's Units (``"BQML"``, ``"CNTS"``, ``"GML"``).
    ``decay_correction``: the header's DecayCorrection (``None`` for GML). ``description``: one line
    saying what was used (for logs and provenance notes).
    """

    factors: tuple[float, ...]
    units: str
    decay_correction: str | None
    description: str

    @property
    def uniform(self) -> bool:
        """True when every instance has the same factor."""
        return max(self.factors) - min(self.factors) <= 1e-12 * max(abs(f) for f in self.factors)


def suvbw_factors(instances: Sequence[Mapping[str, object]], *, source: str = "PET header") -> SUVbwFactors:
    """SUVbw scale factors of the instances (slices) of one PET series; see the module docstring for the rules.

    ``source`` names the data in error messages (e.g. the DICOM folder). Raises :class:`DataError` naming the
    DICOM attribute (keyword and tag) when a needed value is missing or invalid, or when the instances
    disagree on a series-level value (weight, dose, half-life, injection time, units, decay correction).
    """
    if not instances:
        raise DataError(f"{source}: no PET instances given; pass the header values of at least one slice")
    hdr = _Header(instances, source)
    units = hdr.text("Units", "(Units says what the voxel values mean)").upper()
    if units == "GML":
        suv_type = (hdr.optional_text("SUVType") or "BW").upper()
        note = "values already in SUV (Units GML), kept as they are"
        if suv_type != "BW":
            note += f"; SUVType (0054,1006) is {suv_type}, so they are SUV{suv_type.lower()}, not SUVbw"
            log.warning("%s: %s", source, note)
        return SUVbwFactors((1.0,) * len(instances), units, None, note)
    if units not in UNITS:
        raise DataError(
            f"{source}: Units {PET_HEADER_TAGS['Units']} is '{units}', which cannot be converted to SUV "
            f"(known: {', '.join(UNITS)}); {_FIX}"
        )
    decay = hdr.text("DecayCorrection", "(it says to which time the values are decay-corrected)").upper()
    if decay not in DECAY_CORRECTIONS:
        raise DataError(
            f"{source}: DecayCorrection {PET_HEADER_TAGS['DecayCorrection']} is '{decay}', "
            f"expected one of {', '.join(DECAY_CORRECTIONS)}; fix the header or {_FIX}"
        )
    hdr.check_corrections(decay)
    if units == "CNTS":
        factors, how = _counts_factors(hdr, decay)
    else:
        factors, how = _bqml_factors(hdr, decay)
        how = f"Bq/ml -> SUVbw: {how}"
    return SUVbwFactors(tuple(factors), units, decay, how)


def suvbw_factor(header: Mapping[str, object], *, source: str = "PET header") -> float:
    """The SUVbw scale factor of one instance (slice) alone; see :func:`suvbw_factors`."""
    return suvbw_factors([header], source=source).factors[0]


def _counts_factors(hdr: _Header, decay: str) -> tuple[list[float], str]:
    """Philips CNTS: the private SUV factor (7053,1000) per instance, else (7053,1009) x the BQML factor."""
    suv = [hdr.optional_number(i, "PhilipsSUVScaleFactor") for i in range(hdr.n)]
    if all(f is not None and f > 0 for f in suv):
        return suv, "counts -> SUVbw: Philips private SUV scale factor (7053,1000)"
    activity = [hdr.optional_number(i, "PhilipsActivityConcentrationScaleFactor") for i in range(hdr.n)]
    if not all(f is not None and f > 0 for f in activity):
        raise DataError(
            f"{hdr.source}: Units is CNTS (counts) but the Philips private scale factors are missing or zero: "
            f"PhilipsSUVScaleFactor {PET_HEADER_TAGS['PhilipsSUVScaleFactor']} and "
            f"PhilipsActivityConcentrationScaleFactor {PET_HEADER_TAGS['PhilipsActivityConcentrationScaleFactor']} "
            f"(an anonymiser may have removed private tags; export the series again keeping them); or {_FIX}"
        )
    bqml, how = _bqml_factors(hdr, decay)
    factors = [a * b for a, b in zip(activity, bqml, strict=True)]
    return factors, f"counts -> Bq/ml by Philips private factor (7053,1009), Bq/ml -> SUVbw: {how}"


def _bqml_factors(hdr: _Header, decay: str) -> tuple[list[float], str]:
    weight_kg = hdr.series_number("PatientWeight", "kg", "enter the patient weight in the DICOM header")
    dose = hdr.series_number("RadionuclideTotalDose", "Bq", "enter the injected dose (Bq) in the DICOM header")
    if dose < MIN_PLAUSIBLE_DOSE_BQ:
        raise DataError(
            f"{hdr.source}: RadionuclideTotalDose {PET_HEADER_TAGS['RadionuclideTotalDose']} is {dose:g} Bq, "
            f"implausibly small for PET (typical 50-800 MBq); it was probably entered in MBq: fix the header, or {_FIX}"
        )
    base = f"weight {weight_kg:g} kg, dose {dose / 1e6:.6g} MBq"
    if decay == "ADMIN":
        return [weight_kg * 1000.0 / dose] * hdr.n, f"{base}, values decay-corrected to the injection (ADMIN)"
    half_life = hdr.series_number("RadionuclideHalfLife", "s", "enter the radionuclide half-life (s)")
    injection, injection_date_given = hdr.injection_time()
    if decay == "START":
        reference, what = hdr.scan_start()
        seconds = _decay_seconds(injection, reference, injection_date_given, hdr)
        factor = _decay_factor(weight_kg, dose, half_life, seconds)
        how = f"{base}, half-life {half_life:g} s, decay from injection to {what} ({seconds / 60:.1f} min, START)"
        return [factor] * hdr.n, how
    factors = []  # NONE: per frame, from its acquisition start, averaged over the frame
    for i in range(hdr.n):
        seconds = _decay_seconds(injection, hdr.acquisition_time(i), injection_date_given, hdr)
        duration_s = hdr.number(i, "ActualFrameDuration", "ms", "enter the frame duration") / 1000.0
        lam_d = math.log(2.0) / half_life * duration_s
        frame_mean = lam_d / -math.expm1(-lam_d) if lam_d > 0 else 1.0
        factors.append(_decay_factor(weight_kg, dose, half_life, seconds) * frame_mean)
    return factors, f"{base}, half-life {half_life:g} s, no decay correction in the image (NONE): per-frame decay"


def _decay_factor(weight_kg: float, dose: float, half_life: float, seconds: float) -> float:
    """weight (g) / dose decayed over ``seconds``: the SUVbw factor for Bq/ml."""
    return weight_kg * 1000.0 / (dose * 2.0 ** (-seconds / half_life))


def _decay_seconds(injection: dt.datetime, scan: dt.datetime, injection_date_given: bool, hdr: _Header) -> float:
    seconds = (scan - injection).total_seconds()
    if -86400 < seconds < 0 and not injection_date_given:
        seconds += 86400.0  # injected before midnight, scanned after: the start date was taken from the series
        log.warning("%s: injection time is after the scan time; assuming the injection was the day before", hdr.source)
    if seconds < 0:
        raise DataError(
            f"{hdr.source}: the injection time ({injection}) is after the scan time ({scan}); check "
            f"RadiopharmaceuticalStartDateTime/StartTime {PET_HEADER_TAGS['RadiopharmaceuticalStartTime']} and the "
            f"series/acquisition times, or {_FIX}"
        )
    return seconds


class _Header:
    """Typed access to the instances' header values, with errors that name the attribute."""

    def __init__(self, instances: Sequence[Mapping[str, object]], source: str) -> None:
        self.instances = instances
        self.n = len(instances)
        self.source = source

    def _missing(self, key: str, why: str, problem: str = "missing or empty") -> DataError:
        return DataError(f"{self.source}: {key} {PET_HEADER_TAGS[key]} is {problem}; {why}; or {_FIX}")

    def raw(self, i: int, key: str) -> object:
        value = self.instances[i].get(key)
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            value = value.strip("\x00 ")
        return None if value in ("", None) or value == () or value == [] else value

    def optional_text(self, key: str, i: int = 0) -> str | None:
        value = self.raw(i, key)
        return None if value is None else str(value)

    def text(self, key: str, why: str) -> str:
        values = {self.optional_text(key, i) for i in range(self.n)}
        if None in values:
            raise self._missing(key, f"it is needed to convert the PET to SUV {why}")
        return self._same(key, values)

    def optional_number(self, i: int, key: str) -> float | None:
        value = self.raw(i, key)
        if isinstance(value, (list, tuple)):
            value = value[0]
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None

    def number(self, i: int, key: str, unit: str, fix: str) -> float:
        value = self.optional_number(i, key)
        if value is None:
            shown = self.raw(i, key)
            raise self._missing(key, fix, "missing or empty" if shown is None else f"'{shown}', not a number")
        if value <= 0:
            raise self._missing(key, fix, f"{value:g} {unit}, which is not positive")
        return value

    def series_number(self, key: str, unit: str, fix: str) -> float:
        return self._same(key, {self.number(i, key, unit, fix) for i in range(self.n)})

    def _same(self, key: str, values: set):
        if len(values) > 1:
            shown = ", ".join(sorted(f"{v:g}" if isinstance(v, float) else str(v) for v in values))
            raise DataError(
                f"{self.source}: the slices disagree on {key} {PET_HEADER_TAGS[key]} ({shown}), "
                "so they do not come from one PET series; put each series in its own folder"
            )
        return next(iter(values))

    def check_corrections(self, decay: str) -> None:
        corrected = self.raw(0, "CorrectedImage")
        if corrected is None:
            log.warning("%s: CorrectedImage (0028,0051) is missing; cannot check attenuation correction", self.source)
            return
        flags = {str(v).strip().upper() for v in (corrected if isinstance(corrected, (list, tuple)) else [corrected])}
        flags = {part for flag in flags for part in flag.split("\\")}
        if "ATTN" not in flags:
            raise DataError(
                f"{self.source}: CorrectedImage (0028,0051) is {sorted(flags)} without ATTN: the PET is not "
                "attenuation-corrected, so its values are not quantitative and SUV is meaningless; "
                "use the attenuation-corrected (AC) series"
            )
        if ("DECY" in flags) != (decay != "NONE"):
            raise DataError(
                f"{self.source}: CorrectedImage (0028,0051) {sorted(flags)} and DecayCorrection (0054,1102) "
                f"'{decay}' contradict each other (DECY must be listed exactly when decay correction is "
                f"START or ADMIN); fix the header, or {_FIX}"
            )

    def date_time(self, i: int, date_key: str, time_key: str) -> dt.datetime | None:
        date, time = self.optional_text(date_key, i), self.optional_text(time_key, i)
        if date is None or time is None:
            return None
        return _combine(_parse_date(date, date_key, self), _parse_time(time, time_key, self))

    def injection_time(self) -> tuple[dt.datetime, bool]:
        """(injection date/time, whether its date was in the header)."""
        values = {self.optional_text("RadiopharmaceuticalStartDateTime", i) for i in range(self.n)}
        stamp = self._same("RadiopharmaceuticalStartDateTime", values)
        if stamp is not None and len(stamp.strip()) >= 10:
            return _parse_datetime(stamp, "RadiopharmaceuticalStartDateTime", self), True
        key = "RadiopharmaceuticalStartTime"
        time = self._same(key, {self.optional_text(key, i) for i in range(self.n)})
        if time is None:
            raise self._missing(key, "the injection time is needed for decay correction; enter it in the header")
        date_text = self.optional_text("SeriesDate") or self.optional_text("AcquisitionDate")
        if date_text is None:
            raise self._missing("SeriesDate", "the injection date is taken from it")
        return _combine(_parse_date(date_text, "SeriesDate", self), _parse_time(time, key, self)), False

    def acquisition_time(self, i: int) -> dt.datetime:
        stamp = self.optional_text("AcquisitionDateTime", i)
        found = self.date_time(i, "AcquisitionDate", "AcquisitionTime")
        if found is None and stamp is not None:
            found = _parse_datetime(stamp, "AcquisitionDateTime", self)
        if found is None:
            raise self._missing("AcquisitionTime", "with AcquisitionDate (0008,0022) it gives the frame start")
        return found

    def scan_start(self) -> tuple[dt.datetime, str]:
        """The time START decay correction refers to, and which attribute it came from."""
        series = self.date_time(0, "SeriesDate", "SeriesTime")
        acquisitions = [t for i in range(self.n) if (t := self._optional_acquisition(i)) is not None]
        earliest = min(acquisitions) if acquisitions else None
        if series is not None and (earliest is None or series <= earliest):
            return series, f"series time {series:%Y-%m-%d %H:%M:%S}"
        if series is None and earliest is None:
            raise self._missing("SeriesTime", "with SeriesDate (0008,0021) it gives the scan start")
        ge = self.optional_text("GEPrivateScanDateTime")
        if ge is not None and len(ge) >= 10:
            return _parse_datetime(ge, "GEPrivateScanDateTime", self), "GE private scan date/time (0009,xx0D)"
        return earliest, f"earliest acquisition time {earliest:%Y-%m-%d %H:%M:%S} (series time is later)"

    def _optional_acquisition(self, i: int) -> dt.datetime | None:
        try:
            return self.acquisition_time(i)
        except DataError:
            return None


def _combine(date: dt.date, seconds: float) -> dt.datetime:
    return dt.datetime.combine(date, dt.time()) + dt.timedelta(seconds=seconds)


def _bad(hdr: _Header, key: str, text: str, form: str) -> DataError:
    return hdr._missing(key, f"expected {form}; fix the header", f"'{text}', not a valid value")


def _parse_date(text: str, key: str, hdr: _Header) -> dt.date:
    """DICOM DA: YYYYMMDD (also the old YYYY.MM.DD)."""
    digits = text.strip().replace(".", "").replace("-", "")
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError as exc:
        raise _bad(hdr, key, text, "a date YYYYMMDD") from exc


def _parse_time(text: str, key: str, hdr: _Header) -> float:
    """DICOM TM -> seconds after midnight: HH[MM[SS[.F...]]] (also the old HH:MM:SS.F)."""
    clean = text.strip().replace(":", "")
    whole, _, fraction = clean.partition(".")
    try:
        if not whole.isdigit() or len(whole) not in (2, 4, 6):
            raise ValueError(text)
        hours, minutes, seconds = int(whole[:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
        if hours > 23 or minutes > 59 or seconds > 60:
            raise ValueError(text)
        return hours * 3600.0 + minutes * 60.0 + seconds + (float("0." + fraction) if fraction else 0.0)
    except ValueError as exc:
        raise _bad(hdr, key, text, "a time HHMMSS.FFFFFF") from exc


def _parse_datetime(text: str, key: str, hdr: _Header) -> dt.datetime:
    """DICOM DT: YYYYMMDDHH[MM[SS[.F...]]][&ZZXX]. A UTC offset is dropped: all header times are local."""
    clean = text.strip()
    for sign in "+-":
        if sign in clean[8:]:
            clean = clean[: 8 + clean[8:].index(sign)]
    if len(clean) < 10:
        raise _bad(hdr, key, text, "a date-time YYYYMMDDHHMMSS.FFFFFF")
    return _combine(_parse_date(clean[:8], key, hdr), _parse_time(clean[8:], key, hdr))
