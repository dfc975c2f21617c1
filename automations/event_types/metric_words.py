"""Comparisons and aggregations the metric conditions share."""

import statistics

CMP = {
    "$gt": (lambda a, b: a > b, ">"),
    "$gte": (lambda a, b: a >= b, ">="),
    "$lt": (lambda a, b: a < b, "<"),
    "$lte": (lambda a, b: a <= b, "<="),
    "$eq": (lambda a, b: a == b, "=="),
    "$ne": (lambda a, b: a != b, "!="),
}


def average(values):
    """statistics.fmean, which works in floats; where their sum overflows (values near 1e308, all
    finite) statistics.mean, which works in exact fractions: the mean of finite values is finite."""
    try:
        return statistics.fmean(values)
    except OverflowError:
        return float(statistics.mean(values))


AGG = {"AVERAGE": (average, "average"), "MIN": (min, "min"), "MAX": (max, "max")}
