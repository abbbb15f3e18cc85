"""Chart geometry for the printable report: plain shapes (rects, polylines, labels) a template draws as SVG.

Computed here, drawn by ``templates/_graficos.html`` with autoescaping: no markup is built in Python,
no chart library is shipped, and the page prints without running a script.
"""

from __future__ import annotations

import math
from typing import Any

ANCHO, ALTO = 640, 240
MARGEN_IZQ, MARGEN_DER, MARGEN_SUP, MARGEN_INF = 56, 28, 12, 40
COLORES = ("serie-0", "serie-1", "serie-2", "serie-3")


def _escala(maximo: float) -> tuple[float, list[float]]:
    """A round upper bound and 4-5 tick values for an axis from 0 to ``maximo``."""
    if maximo <= 0:
        return 1.0, [0.0, 1.0]
    paso = 10 ** math.floor(math.log10(maximo / 4))
    for factor in (1, 2, 5, 10):
        if maximo / (paso * factor) <= 5:
            paso *= factor
            break
    tope = paso * math.ceil(maximo / paso)
    return tope, [paso * i for i in range(round(tope / paso) + 1)]


def _num(value: float) -> str:
    return f"{value:,.1f}".replace(",", " ").replace(".", ",").removesuffix(",0")


def _marco(tope: float, ticks: list[float], unidad: str) -> list[dict[str, Any]]:
    alto_util = ALTO - MARGEN_SUP - MARGEN_INF
    out: list[dict[str, Any]] = []
    for tick in ticks:
        y = MARGEN_SUP + alto_util * (1 - tick / tope)
        out.append({"tipo": "linea", "x1": MARGEN_IZQ, "y1": round(y, 1), "x2": ANCHO - MARGEN_DER, "y2": round(y, 1), "clase": "rejilla"})
        out.append({"tipo": "texto", "x": MARGEN_IZQ - 6, "y": round(y + 4, 1), "texto": f"{_num(tick)} {unidad}".strip(), "anchor": "end", "clase": "eje"})
    return out


def _y(value: float, tope: float) -> float:
    alto_util = ALTO - MARGEN_SUP - MARGEN_INF
    return round(MARGEN_SUP + alto_util * (1 - value / tope), 1)


def _grafico(elementos: list[dict[str, Any]], leyenda: list[tuple[str, str]], vacio: bool) -> dict[str, Any]:
    return {"ancho": ANCHO, "alto": ALTO, "elementos": elementos, "leyenda": [{"clase": c, "texto": t} for c, t in leyenda], "vacio": vacio}


def barras_agrupadas(grupos: list[tuple[str, list[float]]], series: list[str], unidad: str = "") -> dict[str, Any]:
    """One cluster of bars per group, one bar per series."""
    maximo = max((v for _, values in grupos for v in values), default=0.0)
    tope, ticks = _escala(maximo)
    elementos = _marco(tope, ticks, unidad)
    ancho_util = ANCHO - MARGEN_IZQ - MARGEN_DER
    hueco = ancho_util / max(len(grupos), 1)
    barra = min(40.0, hueco * 0.8 / max(len(series), 1))
    for i, (etiqueta, values) in enumerate(grupos):
        x0 = MARGEN_IZQ + hueco * i + (hueco - barra * len(series)) / 2
        for j, value in enumerate(values):
            y = _y(value, tope)
            elementos.append(
                {
                    "tipo": "rect",
                    "x": round(x0 + barra * j, 1),
                    "y": y,
                    "w": round(barra - 1, 1),
                    "h": round(ALTO - MARGEN_INF - y, 1),
                    "clase": COLORES[j % 4],
                    "titulo": f"{etiqueta} · {series[j]}: {_num(value)} {unidad}",
                }
            )
        elementos.append(
            {"tipo": "texto", "x": round(MARGEN_IZQ + hueco * (i + 0.5), 1), "y": ALTO - MARGEN_INF + 16, "texto": etiqueta, "anchor": "middle", "clase": "eje"}
        )
    return _grafico(elementos, [(COLORES[j % 4], s) for j, s in enumerate(series)], not grupos)


def barras(pares: list[tuple[str, float]], serie: str) -> dict[str, Any]:
    grafico = barras_agrupadas([(label, [value]) for label, value in pares], [serie])
    # Many days: label every n-th bar only, so labels do not overlap.
    textos = [e for e in grafico["elementos"] if e["tipo"] == "texto" and e["anchor"] == "middle"]
    cada = max(1, math.ceil(len(textos) / 12))
    grafico["elementos"] = [e for e in grafico["elementos"] if not (e in textos and textos.index(e) % cada)]
    return grafico


def apiladas(grupos: list[tuple[str, list[float]]], series: list[str]) -> dict[str, Any]:
    """One stacked bar per group (e.g. finalizadas / canceladas / abiertas)."""
    maximo = max((sum(values) for _, values in grupos), default=0.0)
    tope, ticks = _escala(maximo)
    elementos = _marco(tope, ticks, "")
    ancho_util = ANCHO - MARGEN_IZQ - MARGEN_DER
    hueco = ancho_util / max(len(grupos), 1)
    barra = min(48.0, hueco * 0.7)
    for i, (etiqueta, values) in enumerate(grupos):
        x = round(MARGEN_IZQ + hueco * i + (hueco - barra) / 2, 1)
        acumulado = 0.0
        for j, value in enumerate(values):
            if value <= 0:
                continue
            arriba = _y(acumulado + value, tope)
            abajo = _y(acumulado, tope)
            elementos.append(
                {
                    "tipo": "rect",
                    "x": x,
                    "y": arriba,
                    "w": round(barra, 1),
                    "h": round(abajo - arriba, 1),
                    "clase": COLORES[j % 4],
                    "titulo": f"{etiqueta} · {series[j]}: {_num(value)}",
                }
            )
            acumulado += value
        elementos.append({"tipo": "texto", "x": round(x + barra / 2, 1), "y": ALTO - MARGEN_INF + 16, "texto": etiqueta, "anchor": "middle", "clase": "eje"})
    return _grafico(elementos, [(COLORES[j % 4], s) for j, s in enumerate(series)], not grupos)


def _scaled(value: Any, escala: float) -> float | None:
    return float(value) * escala if value is not None else None


def linea(filas: list[dict[str, Any]], clave_x: str, series: list[tuple[str, str]], escala: float = 1.0, unidad: str = "") -> dict[str, Any]:
    """A trend: one polyline per series over the rows (e.g. days), gaps where a value is missing."""
    valores = [[_scaled(row.get(key), escala) for row in filas] for key, _ in series]
    maximo = max((v for serie in valores for v in serie if v is not None), default=0.0)
    tope, ticks = _escala(maximo)
    elementos = _marco(tope, ticks, unidad)
    ancho_util = ANCHO - MARGEN_IZQ - MARGEN_DER
    paso = ancho_util / max(len(filas) - 1, 1)
    for j, serie in enumerate(valores):
        tramo: list[str] = []
        for i, value in enumerate(serie):
            if value is None:
                if len(tramo) > 1:
                    elementos.append({"tipo": "polilinea", "puntos": " ".join(tramo), "clase": COLORES[j % 4]})
                tramo = []
                continue
            x, y = round(MARGEN_IZQ + paso * i, 1), _y(value, tope)
            tramo.append(f"{x},{y}")
            elementos.append(
                {"tipo": "punto", "x": x, "y": y, "clase": COLORES[j % 4], "titulo": f"{filas[i][clave_x]} · {series[j][1]}: {_num(value)} {unidad}"}
            )
        if len(tramo) > 1:
            elementos.append({"tipo": "polilinea", "puntos": " ".join(tramo), "clase": COLORES[j % 4]})
    cada = max(1, math.ceil(len(filas) / 10))
    for i, row in enumerate(filas):
        if i % cada == 0:
            elementos.append(
                {
                    "tipo": "texto",
                    "x": round(MARGEN_IZQ + paso * i, 1),
                    "y": ALTO - MARGEN_INF + 16,
                    "texto": str(row[clave_x])[5:],
                    "anchor": "middle",
                    "clase": "eje",
                }
            )
    return _grafico(elementos, [(COLORES[j % 4], label) for j, (_, label) in enumerate(series)], not filas)
