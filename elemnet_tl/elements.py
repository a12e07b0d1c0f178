"""The 86 elements ElemNet reads, in ElemNet's input order."""

from __future__ import annotations

import numpy as np

ELEMENTS: tuple[str, ...] = tuple(
    """H Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn
    Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm
    Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu""".split()
)
"""ElemNet's element order: column ``i`` of a fraction matrix is ``ELEMENTS[i]``."""

N_ELEMENTS: int = len(ELEMENTS)
ELEMENT_INDEX: dict[str, int] = {symbol: i for i, symbol in enumerate(ELEMENTS)}

assert N_ELEMENTS == 86, N_ELEMENTS


def element_rows(fractions: np.ndarray) -> dict[str, int]:
    """How many rows of an (n, 86) fraction matrix contain each element (elements in none left out): what a
    run's card records of its training data, so that predictions can name the elements it never saw."""
    counts = (np.asarray(fractions) > 0).sum(axis=0)
    return {symbol: int(c) for symbol, c in zip(ELEMENTS, counts) if c}


def unseen_elements(fractions: np.ndarray, seen: dict[str, int]) -> list[str]:
    """Per row, the elements present in it and absent from ``seen`` (:func:`element_rows` of the training
    data), space-separated ("" when every element was seen)."""
    absent = np.array([symbol not in seen for symbol in ELEMENTS])
    hits = (np.asarray(fractions) > 0) & absent
    out = [""] * len(hits)
    for i in np.flatnonzero(hits.any(axis=1)):
        out[i] = " ".join(ELEMENTS[j] for j in np.flatnonzero(hits[i]))
    return out
