// The side panel: labels per round and the collection map, drawn as small SVGs (gr.HTML's js_on_load).
// props.value = {rounds: [[round, it, not_it], ...], map: {xy, predicted, marked, size} | null}
//   xy: base64 of (x, y) byte pairs on a size x size grid, one per sampled point; predicted: "0"/"1" per point
//   ("" before a search); marked: [[id, x, y, kind]] for labelled ("it" / "not it") and current ("batch") items.
// Clicking the map sends trigger('pick', {row}) for a sampled point or {id} for a marked one.

const root = element.querySelector('.ct-panel');
const SVG = 'http://www.w3.org/2000/svg';
const COLOURS = {
  collection: 'var(--ct-map-collection)', predicted: 'var(--ct-map-predicted)',
  it: 'var(--ct-it)', 'not it': 'var(--ct-not)', batch: 'var(--ct-focus)',
};

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  node.append(...children.filter(Boolean));
  return node;
}
function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  return node;
}
const count = (n) => Number(n).toLocaleString('en');
function swatch(colour, text, ring) {
  const mark = el('span', { class: 'ct-swatch' + (ring ? ' ct-ring' : '') });
  mark.style.setProperty('--swatch', colour);
  return el('span', { class: 'ct-legend-item' }, mark, text);
}

// ------------------------------------------------------------------------------------------------- labels per round
const roundsBox = el('section', { class: 'ct-chart', 'aria-label': 'Labels per round' });
const mapBox = el('section', { class: 'ct-map', 'aria-label': 'Collection map' });
root.append(roundsBox, mapBox);

function niceStep(max, ticks) {
  const raw = Math.max(1, max / ticks);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return Math.max(1, Math.round(step));
}

function drawRounds(rounds) {
  const title = el('h3', { class: 'ct-chart-title', text: 'Labels per round' });
  if (!rounds || !rounds.length) {
    roundsBox.replaceChildren(title, el('p', { class: 'ct-chart-empty', text: 'No labels yet. Label a batch and train: each round’s “it” and “not it” counts appear here.' }));
    return;
  }
  const legend = el('div', { class: 'ct-legend' }, swatch(COLOURS.it, 'it'), swatch(COLOURS['not it'], 'not it'));
  const width = 260, height = 140, left = 30, right = 6, top = 8, bottom = 28;
  const max = Math.max(1, ...rounds.map(([, p, n]) => p + n));
  const step = niceStep(max, 4);
  const yMax = Math.ceil(max / step) * step;
  const plotW = width - left - right, plotH = height - top - bottom;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'ct-svg', role: 'img',
    'aria-label': rounds.map(([r, p, n]) => `round ${r}: ${p} it, ${n} not it`).join('; ') });
  for (let v = 0; v <= yMax; v += step) {
    const y = top + plotH - (v / yMax) * plotH;
    chart.append(svg('line', { x1: left, x2: width - right, y1: y, y2: y, class: 'ct-rule' }));
    chart.append(svg('text', { x: left - 4, y: y + 3, 'text-anchor': 'end', class: 'ct-tick', text: count(v) }));
  }
  const slot = plotW / rounds.length;
  const barW = Math.max(2, Math.min(28, slot * 0.7));
  const every = Math.ceil(rounds.length / 10); // at most ~10 round labels fit under the axis
  rounds.forEach(([round, positives, negatives], i) => {
    const x = left + slot * i + (slot - barW) / 2;
    const hp = (positives / yMax) * plotH, hn = (negatives / yMax) * plotH;
    const base = top + plotH;
    chart.append(svg('rect', { x, y: base - hp, width: barW, height: hp, fill: COLOURS.it }));
    chart.append(svg('rect', { x, y: base - hp - hn, width: barW, height: hn, fill: COLOURS['not it'] }));
    if (i % every === 0 || i === rounds.length - 1) {
      chart.append(svg('text', { x: x + barW / 2, y: base + 12, 'text-anchor': 'middle', class: 'ct-tick',
        text: round === 0 ? 'earlier' : String(round) }));
    }
  });
  chart.append(svg('text', { x: left + plotW / 2, y: height - 2, 'text-anchor': 'middle', class: 'ct-axis', text: 'round' }));
  roundsBox.replaceChildren(title, legend, chart);
}

// ------------------------------------------------------------------------------------------------- the map
let points = []; // [{x, y, row}] sampled points, then [{x, y, id}] marked ones: what a click can pick
let size = 256;

function decode(xy) {
  const bytes = atob(xy || '');
  const out = [];
  for (let i = 0; i + 1 < bytes.length; i += 2) out.push([bytes.charCodeAt(i), bytes.charCodeAt(i + 1)]);
  return out;
}

function dots(coordinates, colour, radius, extra = {}) {
  // One path for many points: a zero-length segment per point, drawn round by the stroke. 2,000 points cost one
  // element instead of 2,000.
  const d = coordinates.map(([x, y]) => `M${x} ${size - y}h0`).join('');
  return svg('path', { d, stroke: colour, 'stroke-width': radius * 2, 'stroke-linecap': 'round', fill: 'none', ...extra });
}

function drawMap(map) {
  const title = el('h3', { class: 'ct-chart-title', text: 'Collection map' });
  if (!map) {
    mapBox.replaceChildren(title, el('p', { class: 'ct-chart-empty', text: 'The map appears once the collection is ready.' }));
    return;
  }
  size = map.size || 256;
  const xy = decode(map.xy);
  const predicted = map.predicted || '';
  const marked = map.marked || [];
  points = xy.map(([x, y], row) => ({ x, y, row }));
  for (const [id, x, y] of marked) points.push({ x, y, id });
  const pad = 6;
  const chart = svg('svg', { viewBox: `${-pad} ${-pad} ${size + 2 * pad} ${size + 2 * pad}`, class: 'ct-svg ct-map-svg',
    role: 'img', 'aria-label': `Map of ${count(xy.length)} images; ${marked.length} of yours marked. Click a point to show that image.` });
  const it = xy.filter((_, i) => predicted[i] === '1');
  const rest = xy.filter((_, i) => predicted[i] !== '1');
  chart.append(dots(rest, predicted ? COLOURS.predicted : COLOURS.collection, 1.6, { opacity: 0.8 }));
  chart.append(dots(it, 'var(--ct-map-it)', 1.8, { opacity: 0.9 }));
  const byKind = (kind) => marked.filter((m) => m[3] === kind).map((m) => [m[1], m[2]]);
  chart.append(dots(byKind('not it'), COLOURS['not it'], 3.2));
  chart.append(dots(byKind('it'), COLOURS.it, 3.2));
  const batch = byKind('batch');
  chart.append(svg('path', { d: batch.map(([x, y]) => `M${x - 4} ${size - y}a4 4 0 1 0 8 0a4 4 0 1 0 -8 0`).join(''),
    stroke: COLOURS.batch, 'stroke-width': 1.6, fill: 'none' }));
  chart.addEventListener('click', (event) => pick(chart, event));
  const legend = el('div', { class: 'ct-legend' },
    predicted ? swatch('var(--ct-map-it)', 'predicted it') : null,
    swatch(predicted ? COLOURS.predicted : COLOURS.collection, predicted ? 'predicted not it' : 'collection'),
    swatch(COLOURS.it, 'labelled it'), swatch(COLOURS['not it'], 'labelled not it'),
    swatch(COLOURS.batch, 'this batch', true));
  const note = el('p', { class: 'ct-chart-note', text: 'Each dot is an image, placed by the two main directions of its embedding (PCA). Click one to show it in the batch.' });
  mapBox.replaceChildren(title, chart, legend, note);
}

function pick(chart, event) {
  const box = chart.getBoundingClientRect();
  const view = chart.viewBox.baseVal;
  const x = view.x + ((event.clientX - box.left) / box.width) * view.width;
  const y = size - (view.y + ((event.clientY - box.top) / box.height) * view.height);
  let best = null, bestDistance = 8 * 8; // within 8 map units (~3% of the map)
  for (const point of points) {
    const distance = (point.x - x) ** 2 + (point.y - y) ** 2;
    if (distance <= bestDistance) { best = point; bestDistance = distance; }
  }
  if (best) trigger('pick', best.id !== undefined ? { id: best.id } : { row: best.row });
}

let withSession = false; // whether the panel shows a session (its map has the classifier's predictions)

function draw(value) {
  const v = value || {};
  // As in the grid: the page's first value (no session) never replaces a session's panel that overtook it.
  const session = Boolean(v.map && v.map.predicted);
  if (withSession && v.map && !session) return;
  withSession = session;
  drawRounds(v.rounds);
  drawMap(v.map);
}

draw(props.value);
watch('value', () => draw(props.value));
