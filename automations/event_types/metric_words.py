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
AGG = {"AVERAGE": (statistics.fmean, "average"), "MIN": (min, "min"), "MAX": (max, "max")}
