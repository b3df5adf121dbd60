// Small SVG line charts, no library: a series of [epoch ms, value] over the shift, with an optional limit line.

const NS = "http://www.w3.org/2000/svg";
const H = 120, PAD = { left: 40, right: 6, top: 8, bottom: 16 };

function node(tag, attrs, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

export function lineChart(svg, series, { label, format = (v) => v.toFixed(1), limit = null, teal = false, floor = 0 }) {
  const W = Math.max(200, Math.round(svg.clientWidth || 400));  // drawn at its own width: text stays unscaled
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const last = series.length ? series[series.length - 1][1] : null;
  svg.setAttribute("aria-label", `${label}: ${last === null ? "no data yet" : format(last)}`);
  const values = series.map((p) => p[1]);
  const top = Math.max(floor, limit ?? 0, ...values) * 1.15 || 1;
  const t0 = series.length ? series[0][0] : 0;
  const t1 = series.length > 1 ? series[series.length - 1][0] : t0 + 1;
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0 || 1)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const children = [
    node("line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }),
    node("text", { x: 2, y: PAD.top + 8 }, format(top)),
    node("text", { x: 2, y: H - PAD.bottom }, format(0)),
    node("text", { x: W - PAD.right, y: H - 3, "text-anchor": "end" }, label),
  ];
  if (series.length) {
    const time = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    children.push(node("text", { x: PAD.left, y: H - 3 }, time(t0)));
  }
  if (limit !== null) {
    children.push(node("line", { class: "limit", x1: PAD.left, x2: W - PAD.right, y1: y(limit), y2: y(limit) }));
  }
  if (series.length) {
    const d = series.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    children.push(node("path", { class: teal ? "line teal" : "line", d }));
  }
  svg.replaceChildren(...children);
}
