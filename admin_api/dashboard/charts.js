// Rates over time as small SVG line charts, one per rate, from the rows of
// `GET /v1/stats?group_by=hour` (each with its `hour` and the `rates` the API computed).

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 320;
const HEIGHT = 160;
const MARGIN = { top: 12, right: 12, bottom: 24, left: 44 };

export const SERIES = [
  { key: "delivery_rate", label: "Delivery rate", basis: "sent", colour: "#1a7f37" },
  { key: "bounce_rate", label: "Bounce rate", basis: "sent", colour: "#cf222e" },
  { key: "complaint_rate", label: "Complaint rate", basis: "delivered", colour: "#8250df" },
];

// Each hour of the stats rows with its rates in percent (null: nothing to rate).
export function ratesByHour(rows) {
  return rows
    .map((row) => {
      const point = { time: Date.parse(row.hour) };
      for (const { key } of SERIES) {
        const rate = row.rates[key];
        point[key] = rate === null || rate === undefined ? null : 100 * rate;
      }
      return point;
    })
    .filter((point) => Number.isFinite(point.time))
    .sort((a, b) => a.time - b.time);
}

function node(tag, attributes, text) {
  const made = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, String(value));
  if (text !== undefined) made.textContent = text;
  return made;
}

function hourLabel(time) {
  return new Date(time).toISOString().slice(5, 13).replace("T", " ") + "h";
}

// An SVG chart of `points[*][series.key]` over `points[*].time`.
export function lineChart(rated, series) {
  const points = rated.filter((p) => p[series.key] !== null);
  const svg = node("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": series.label,
    "data-series": series.key,
  });
  const left = MARGIN.left, right = WIDTH - MARGIN.right;
  const top = MARGIN.top, bottom = HEIGHT - MARGIN.bottom;
  const highest = Math.max(1, ...points.map((p) => p[series.key]));
  const first = points.length ? points[0].time : 0;
  const span = points.length > 1 ? points[points.length - 1].time - first : 1;
  const x = (time) => (points.length > 1 ? left + ((time - first) / span) * (right - left) : (left + right) / 2);
  const y = (value) => bottom - (value / highest) * (bottom - top);

  svg.append(node("line", { x1: left, y1: bottom, x2: right, y2: bottom, stroke: "#8c959f" }));
  svg.append(node("line", { x1: left, y1: top, x2: left, y2: bottom, stroke: "#8c959f" }));
  svg.append(node("text", { x: left - 4, y: top + 4, "text-anchor": "end", "font-size": 10 }, `${highest.toFixed(1)}%`));
  svg.append(node("text", { x: left - 4, y: bottom, "text-anchor": "end", "font-size": 10 }, "0%"));
  if (!points.length) {
    svg.append(node("text", { x: (left + right) / 2, y: (top + bottom) / 2, "text-anchor": "middle", "font-size": 12 }, "Nothing to rate yet"));
    return svg;
  }
  svg.append(node("text", { x: left, y: HEIGHT - 6, "font-size": 10 }, hourLabel(first)));
  if (points.length > 1) {
    svg.append(node("text", { x: right, y: HEIGHT - 6, "text-anchor": "end", "font-size": 10 }, hourLabel(first + span)));
  }
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(p.time).toFixed(1)},${y(p[series.key]).toFixed(1)}`);
  svg.append(node("path", { d: path.join(" "), fill: "none", stroke: series.colour, "stroke-width": 2.5, class: "series" }));
  for (const p of points) {
    const dot = node("circle", { cx: x(p.time).toFixed(1), cy: y(p[series.key]).toFixed(1), r: 3.5, fill: series.colour });
    dot.append(node("title", {}, `${hourLabel(p.time)}: ${p[series.key].toFixed(2)}%`));
    svg.append(dot);
  }
  return svg;
}
