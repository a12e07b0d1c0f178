"""The 86 elements ElemNet reads, in ElemNet's input order."""

from __future__ import annotations

ELEMENTS: tuple[str, ...] = tuple(
    """H Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn
    Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm
    Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu""".split()
)
"""ElemNet's element order: column ``i`` of a fraction matrix is ``ELEMENTS[i]``."""

N_ELEMENTS: int = len(ELEMENTS)
ELEMENT_INDEX: dict[str, int] = {symbol: i for i, symbol in enumerate(ELEMENTS)}

assert N_ELEMENTS == 86, N_ELEMENTS
