"""ErrorStats: qk_error_stats as a dataclass."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorStats:
    count: int             # elements compared
    max_abs_error: float
    mean_abs_error: float
    rmse: float
    sqnr_db: float         # 10*log10(sum x^2 / sum err^2); +inf when the error is 0
    signal_rms: float

    @classmethod
    def from_c(cls, s):
        return cls(int(s.count), float(s.max_abs_error), float(s.mean_abs_error), float(s.rmse),
                   float(s.sqnr_db), float(s.signal_rms))

    def __getitem__(self, key):
        # Lets callers treat the result like the dict the C struct resembles: stats["rmse"].
        return getattr(self, key)
