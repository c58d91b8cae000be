// The price chart (lightweight-charts): candles, pattern / entry / BE / trail / exit markers,
// and POC / VAH / VAL / qualified-level lines; plus the cumulative delta chart below it.

import {
  CandlestickSeries,
  ColorType,
  createChart,
  createSeriesMarkers,
  HistogramSeries,
  LineSeries,
  LineStyle,
} from "lightweight-charts";

const THEME = {
  layout: { background: { type: ColorType.Solid, color: "#131722" }, textColor: "#b2b5be", fontFamily: "sans-serif" },
  grid: { vertLines: { color: "#1e222d" }, horzLines: { color: "#1e222d" } },
  timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#2a2e39" },
  rightPriceScale: { borderColor: "#2a2e39" },
  crosshair: { mode: 0 },
  autoSize: true,
};

// lightweight-charts sizes itself to its container: an absolutely placed one fills the panel
function filler(host) {
  const div = document.createElement("div");
  div.className = "fill";
  host.appendChild(div);
  return div;
}

export class PriceChart {
  constructor(host) {
    this.chart = createChart(filler(host), THEME);
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
      wickUpColor: "#26a69a", wickDownColor: "#ef5350",
    });
    this.volume = this.chart.addSeries(HistogramSeries, { priceScaleId: "vol", priceFormat: { type: "volume" } });
    this.chart.priceScale("vol").applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
    this.markers = createSeriesMarkers(this.candles, []);
    this.lines = [];
    this.count = 0;
    this.lastTime = 0;
  }

  setPrecision(tick) {
    const dec = Math.max(0, Math.round(-Math.log10(tick)));
    this.candles.applyOptions({ priceFormat: { type: "price", precision: dec, minMove: tick } });
  }

  setCandles(list) {
    this.candles.setData(list.map(ohlc));
    this.volume.setData(list.map(vol));
    this.count = list.length;
    this.lastTime = list.length ? list[list.length - 1].time : 0;
    this.chart.timeScale().scrollToRealTime();
  }

  update(c) {
    if (c.time < this.lastTime) return; // lightweight-charts only updates the last bar or appends
    this.candles.update(ohlc(c));
    this.volume.update(vol(c));
    if (c.time > this.lastTime) this.count += 1;
    this.lastTime = c.time;
  }

  setMarkers(list) {
    // a trade event's marker sits at its price; a pattern's above or below its bar
    const shown = list.map((m) => {
      const base = { time: m.time, color: m.color, shape: m.shape, text: m.text };
      const atPrice = m.shape !== "circle" && Number.isFinite(m.price) && m.price > 0;
      return atPrice ? { ...base, position: "atPriceMiddle", price: m.price } : { ...base, position: m.position };
    });
    shown.sort((a, b) => a.time - b.time);
    this.markers.setMarkers(shown);
    this.markerCount = shown.length;
  }

  setLevels(levels) {
    for (const l of this.lines) this.candles.removePriceLine(l);
    this.lines = levels
      .filter((l) => Number.isFinite(l.price) && l.price > 0)
      .map((l) => this.candles.createPriceLine({
        price: l.price, color: l.color, lineWidth: 1,
        lineStyle: l.dashed ? LineStyle.Dashed : LineStyle.Solid, axisLabelVisible: true, title: l.title,
      }));
  }
}

function ohlc(c) {
  return { time: c.time, open: c.open, high: c.high, low: c.low, close: c.close };
}

function vol(c) {
  return { time: c.time, value: c.volume, color: c.close >= c.open ? "rgba(38,166,154,0.4)" : "rgba(239,83,80,0.4)" };
}

export class DeltaChart {
  constructor(host) {
    this.chart = createChart(filler(host), THEME);
    this.bars = this.chart.addSeries(HistogramSeries, { priceScaleId: "bars", title: "bar delta" });
    this.chart.priceScale("bars").applyOptions({ scaleMargins: { top: 0.6, bottom: 0 } });
    this.session = this.chart.addSeries(LineSeries, { color: "#ffd600", lineWidth: 2, title: "session CVD" });
    this.window = this.chart.addSeries(LineSeries, { color: "#2962ff", lineWidth: 1, title: "cumulative (loaded bars)" });
  }

  setBars(bars) {
    let total = 0;
    const win = [];
    for (const b of bars) {
      total += b.delta;
      win.push({ time: b.time, value: total });
    }
    this.bars.setData(bars.map((b) => ({ time: b.time, value: b.delta, color: b.delta >= 0 ? "rgba(38,166,154,0.6)" : "rgba(239,83,80,0.6)" })));
    this.session.setData(bars.map((b) => ({ time: b.time, value: b.cvd })));
    this.window.setData(win);
  }
}
