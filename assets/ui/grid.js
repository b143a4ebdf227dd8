// The labelling grid: gr.HTML's js_on_load (Gradio 6). `element` is the component's root, `props.value` the batch
// as the server sent it, `trigger(name, data)` sends an event to the server, `watch('value', fn)` runs fn after the
// server sends a new value. Everything is drawn here with DOM calls (textContent, setAttribute), never by pasting
// strings into HTML: ids, captions and prompts come from datasets and visitors.
//
// Keys (inside the grid): arrows or j / k move; y = it, n = not it, space = no opinion, 1-5 = -1, -0.5, 0, +0.5, +1
// (each labels the focused image and moves on); m = more like this; x = the rest "not it"; Enter trains;
// u undoes; ? shows the keys. A batch of 10 takes 11 keystrokes: ten labels and Enter.
//
// A quality check (value.mode === 'check', cards marked `audit`) is labelled the same way, but Enter sends
// trigger('check', {labels}) instead of training, the cards hide their scores (they would hint at the answers) and
// have no "more like this". "Check quality" sends trigger('audit', {labels}) with the labels set so far.
//
// "Recheck" (check my labels) sends trigger('suspects', {labels}): the labels the classifier most disagrees with come back
// onto the batch (cards marked `suspect`, with their labels), to be corrected and trained on like any other.
//
// A card marked `explore` is a random pick from outside the search (trainer/exploration.py): it carries a small
// "explore" badge and says so in its label, and the stats line says how many there are and why (stats.explore_note).

const root = element.querySelector('.ct-grid');
const STEPS = [-1, -0.5, 0, 0.5, 1];
const STEP_NAMES = ['−1', '−½', '0', '+½', '+1'];
const KEYS = [
  ['← → ↑ ↓  or  j / k', 'move between images'],
  ['y', 'it (+1), then the next image'],
  ['n', 'not it (−1), then the next image'],
  ['space', 'no opinion (0), then the next image'],
  ['1 2 3 4 5', '−1, −½, 0, +½, +1, then the next image'],
  ['m', 'more like this: it, and its nearest neighbours in the next batch'],
  ['x', 'mark every image without a label “not it”'],
  ['Enter', 'train on the labels and show the next batch'],
  ['u', 'undo the last round (or the last Start over)'],
  ['?', 'show or hide these keys'],
];

let shown = null; // the value on screen: {key, batch, stats, ...}
let labels = {}; // id -> score in [-1, 1], what the person has set on this batch
let more = new Set(); // ids marked "more like this"
let focusIndex = 0;
let busy = null; // the action waiting for the server, or null

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

const signed = (x) => (x > 0 ? '+' : x < 0 ? '−' : '') + Math.abs(x).toLocaleString('en', { maximumFractionDigits: 2 });
const count = (n) => Number(n).toLocaleString('en');
function labelWords(value) {
  if (!value) return 'no label';
  const strength = Math.abs(value) === 1 ? '' : ` (${signed(value)})`;
  return (value > 0 ? 'it' : 'not it') + strength;
}

// ------------------------------------------------------------------------------------------------- the static frame
const offer = el('div', { class: 'ct-offer', role: 'region', 'aria-label': 'Resume an earlier session', hidden: true });
const stats = el('p', { class: 'ct-stats', 'aria-live': 'polite' });
const notice = el('p', { class: 'ct-notice', 'aria-live': 'polite', hidden: true });
const cards = el('div', { class: 'ct-cards', role: 'list', 'aria-label': 'Images to label' });
const empty = el('div', { class: 'ct-empty' });
const trainButton = el('button', { class: 'ct-train primary', type: 'button', onclick: () => train() });
const undoButton = el('button', { class: 'ct-undo', type: 'button', onclick: () => undo() });
const restButton = el('button', {
  class: 'ct-rest', type: 'button', text: 'The rest “not it”', title: 'Every image without a label becomes “not it” (x)',
  onclick: () => markRest(),
});
const restartButton = el('button', { class: 'ct-restart', type: 'button', text: 'Start over', onclick: () => askRestart() });
const checkButton = el('button', {
  class: 'ct-check', type: 'button', text: 'Check quality',
  title: 'Label 20 images drawn at random (never trained on) to estimate how good the classifier is',
  onclick: () => startCheck(),
});
const suspectsButton = el('button', {
  // Short on the bar: one more long button wraps the bar to two rows at a desktop width, over the settings.
  class: 'ct-suspects-button', type: 'button', text: 'Recheck', 'aria-label': 'Check my labels',
  title: 'Bring back the labels the classifier most disagrees with, to correct any given by mistake',
  onclick: () => { if (shown && shown.stats && !checking()) act('suspects', { labels: givenLabels() }); },
});
const keysButton = el('button', {
  class: 'ct-keys-button', type: 'button', text: '?', title: 'Keyboard shortcuts (?)', 'aria-label': 'Keyboard shortcuts',
  onclick: () => toggleKeys(),
});
// On a phone the bar is one row (Train, Undo, "more"): "more" opens a second row with the other actions.
const trayButton = el('button', {
  class: 'ct-tray-button', type: 'button', text: '⋯', title: 'More actions', 'aria-label': 'More actions',
  'aria-expanded': 'false', onclick: () => toggleTray(),
});
for (const button of [restButton, checkButton, suspectsButton, restartButton]) button.classList.add('ct-secondary');
const bar = el('div', { class: 'ct-bar', role: 'toolbar', 'aria-label': 'Round actions' },
  restButton, trainButton, undoButton, checkButton, suspectsButton, restartButton, keysButton, trayButton);
bar.addEventListener('click', (event) => {
  if (event.target.closest('.ct-secondary')) toggleTray(false); // an action taken from the tray closes it
});
const confirmText = el('span', {});
const confirmBox = el('div', { class: 'ct-confirm', role: 'alertdialog', 'aria-label': 'Confirm start over', hidden: true },
  confirmText,
  el('button', { class: 'ct-confirm-yes stop', type: 'button', text: 'Start over', onclick: () => restart() }),
  el('button', { class: 'ct-confirm-no', type: 'button', text: 'Cancel', onclick: () => closeConfirm(true) }));
const keysTable = el('dl', { class: 'ct-keys-list' });
for (const [keys, what] of KEYS) keysTable.append(el('dt', { text: keys }), el('dd', { text: what }));
const keysPanel = el('div', { class: 'ct-keys', role: 'dialog', 'aria-label': 'Keyboard shortcuts', hidden: true },
  el('p', { class: 'ct-keys-title', text: 'Keys (with an image focused)' }), keysTable,
  el('button', { type: 'button', text: 'Close', onclick: () => toggleKeys(false) }));
root.append(offer, stats, notice, empty, cards, confirmBox, keysPanel, bar);

// ------------------------------------------------------------------------------------------------- drawing
function draw(value) {
  // A page's first value (no session yet: key "none") can arrive after a session started while it was on its way
  // (a quick search on a busy server); it never replaces a session on screen.
  if (value && value.key === 'none' && shown && shown.stats) return;
  const fresh = !shown || !value || value.key !== shown.key;
  shown = value || { batch: [] };
  if (fresh) {
    labels = {};
    more = new Set();
    focusIndex = 0;
  }
  // A card added to the batch on screen (a map pick, a doubted label brought back) comes with its label.
  for (const card of shown.batch || []) if (card.label && !(card.id in labels)) labels[card.id] = card.label;
  setBusy(null);
  drawOffer();
  drawStats();
  drawCards();
  drawBar();
  if (fresh) closeConfirm(false);
  if (fresh && (shown.batch || []).length && shouldTakeFocus()) focusCard(0);
}

function drawOffer() {
  const o = shown.offer;
  offer.replaceChildren();
  offer.hidden = !o;
  if (!o) return;
  offer.append(
    el('span', {
      text: `You have ${count(o.labels)} labels${o.checks ? ` and ${count(o.checks)} quality-check labels` : ''} `
        + `for “${o.prompt || 'an image'}” from an earlier visit. `,
    }),
    el('button', { class: 'ct-resume primary', type: 'button', text: 'Resume', onclick: () => act('resume', {}) }),
  );
}

const checking = () => Boolean(shown && shown.mode === 'check');

function drawStats() {
  const s = shown.stats;
  notice.hidden = !shown.notice;
  notice.textContent = shown.notice || '';
  root.toggleAttribute('data-check', checking());
  if (!s) {
    stats.replaceChildren(el('span', { text: shown.hint || 'Describe a concept above and press Search.' }));
    return;
  }
  if (checking()) {
    stats.replaceChildren(
      el('strong', { text: 'Quality check' }),
      ` · ${count(shown.batch.length)} images drawn at random from those not yet seen, never trained on`,
    );
    return;
  }
  const parts = [
    el('strong', { text: `Round ${count(s.round)}` }),
    ` · ${count(s.labels)} labels (+${count(s.positives)} / −${count(s.negatives)}) · ${count(s.positives)} found`,
    ` · ${count(s.seen)} seen · `,
    el('span', { class: 'ct-setting', text: `${s.strategy}, ${count(s.batch_size)} a round` }),
  ];
  stats.replaceChildren(...parts);
  if (s.changes && s.changes.length) {
    stats.append(el('span', { class: 'ct-changes', text: ` · now: ${s.changes.join('; ')}` }));
  }
  if (s.explore_note) stats.append(el('span', { class: 'ct-explore-note', text: ` · ${s.explore_note}` }));
  if (s.collection_note) stats.append(el('span', { class: 'ct-collection-note', text: ` · ${s.collection_note}` }));
  if (s.exhausted) {
    stats.append(el('span', { class: 'ct-done', text: ' · You have seen the whole collection: classify it or export the classifier.' }));
  } else if (s.running_out_note) {  // worded by the server (trainer/views.py running_out_note)
    stats.append(el('span', { class: 'ct-running-out', text: ` · ${s.running_out_note}` }));
  }
  if (s.no_match_note) stats.append(el('span', { class: 'ct-no-match', text: ` · ${s.no_match_note}` }));
}

function cardLabel(card, index) {
  const name = card.alt || card.id;
  const score = card.audit ? '' : ` Score ${card.score.toFixed(2)}.`; // a check hides the score: it would hint
  return `Image ${index + 1} of ${shown.batch.length}: ${name}. ${labelWords(labels[card.id] || 0)}` +
    (more.has(card.id) ? ', more like this' : '') + (card.suspect ? ', a label the classifier doubts' : '') +
    (card.explore ? ', a random pick from outside the search' : '') + `.${score}`;
}

function drawCards() {
  const batch = shown.batch || [];
  empty.hidden = batch.length > 0 || !shown.stats;
  empty.textContent = shown.stats ? 'Nothing left to show: every image has been seen.' : '';
  // Cards are rebuilt only for a new batch; a label changes attributes of the card in place.
  if (cards.childElementCount !== batch.length || [...cards.children].some((c, i) => c.dataset.id !== batch[i].id)) {
    cards.replaceChildren(...batch.map((card, index) => buildCard(card, index)));
  }
  batch.forEach((card, index) => paintCard(cards.children[index], card, index));
}

function buildCard(card, index) {
  const name = card.alt || card.id;
  const node = el('div', { class: 'ct-card', role: 'listitem', tabindex: -1, 'data-id': card.id });
  node.addEventListener('focus', () => { focusIndex = index; updateTabStops(); });
  const thumb = el('div', { class: 'ct-thumb' },
    el('img', { src: card.thumbnail, alt: name, width: 192, height: 192, decoding: 'async', draggable: 'false' }),
    el('span', { class: 'ct-score', title: "The classifier's current score: its estimated chance that this is it",
      text: card.score.toFixed(2) }),
    el('span', { class: 'ct-tag', 'aria-hidden': 'true' }),
    el('span', { class: 'ct-explore-mark', 'aria-hidden': 'true', text: 'explore',
      title: 'A random pick from outside the search: it shows the classifier what it has not seen' }));
  thumb.addEventListener('click', () => focusCard(index));
  const choice = el('div', { class: 'ct-choice' },
    el('button', { class: 'ct-no', type: 'button', tabindex: -1, 'aria-label': `Not it: ${name}`,
      onclick: () => setLabel(index, labels[card.id] < 0 ? 0 : -1, false) }, '✗ not it'),
    el('button', { class: 'ct-yes', type: 'button', tabindex: -1, 'aria-label': `It: ${name}`,
      onclick: () => setLabel(index, labels[card.id] > 0 ? 0 : 1, false) }, '✓ it'));
  const fine = el('div', { class: 'ct-fine', role: 'group', 'aria-label': `Confidence for ${name}` });
  STEPS.forEach((step, k) => fine.append(el('button', {
    type: 'button', tabindex: -1, 'data-step': step, text: STEP_NAMES[k], title: `${labelWords(step)} (key ${k + 1})`,
    'aria-label': `${labelWords(step)}: ${name}`, onclick: () => setLabel(index, step, false),
  })));
  const moreButton = el('button', { class: 'ct-more', type: 'button', tabindex: -1, 'aria-label': `More like this: ${name}`,
    title: 'It, and bring its nearest neighbours into the next batch (m)', onclick: () => toggleMore(index, false) },
  'more like this');
  node.append(thumb, choice, fine, moreButton);
  return node;
}

function paintCard(node, card, index) {
  const value = labels[card.id] || 0;
  node.dataset.label = value > 0 ? 'it' : value < 0 ? 'not-it' : 'none';
  node.style.setProperty('--strength', String(Math.abs(value)));
  node.setAttribute('aria-label', cardLabel(card, index));
  for (const extra of ['suspect', 'audit', 'explore']) node.classList.toggle(`ct-${extra}`, Boolean(card[extra]));
  node.querySelector('.ct-tag').textContent = value ? (value > 0 ? '✓ ' : '✗ ') + signed(value) : '';
  node.querySelector('.ct-no').setAttribute('aria-pressed', String(value < 0));
  node.querySelector('.ct-yes').setAttribute('aria-pressed', String(value > 0));
  for (const button of node.querySelectorAll('.ct-fine button')) {
    button.setAttribute('aria-pressed', String(Number(button.dataset.step) === value));
  }
  node.querySelector('.ct-more').setAttribute('aria-pressed', String(more.has(card.id)));
  node.classList.toggle('ct-more-on', more.has(card.id));
}

function drawBar() {
  const s = shown.stats;
  const hasBatch = (shown.batch || []).length > 0;
  if (checking()) {
    trainButton.textContent = busy === 'check' ? 'Estimating…' : 'Done: estimate quality';
    trainButton.title = 'Record these labels (never trained on) and estimate how good the classifier is (Enter)';
    trainButton.disabled = !hasBatch;
    undoButton.textContent = 'Skip check';
    undoButton.title = 'Back to labelling without recording this check: its images count as seen, with no opinion';
    undoButton.disabled = false;
  } else {
    trainButton.textContent = busy === 'train' ? 'Training…' : 'Train & requery';
    trainButton.title = 'Train on every label so far and show the next batch (Enter)';
    trainButton.disabled = !s || !hasBatch;
    undoButton.textContent = s && s.undo === 'start' ? 'Undo start over' : 'Undo';
    undoButton.title = 'Take back the last round (u)';
    undoButton.disabled = !s || !s.undo;
  }
  checkButton.hidden = checking();
  checkButton.disabled = !s || Boolean(s.exhausted);
  suspectsButton.hidden = checking() || !s || !s.labels; // nothing to recheck before the first label
  restButton.disabled = !hasBatch;
  restartButton.disabled = !s;
  bar.hidden = !s && !shown.offer;
}

function updateTabStops() {
  [...cards.children].forEach((node, i) => node.setAttribute('tabindex', i === focusIndex ? '0' : '-1'));
}

function shouldTakeFocus() {
  // After Search (Enter in the prompt) or a round, the first image takes focus so labelling can start at once;
  // never when the person is typing elsewhere (settings, Classify, export).
  const active = document.activeElement;
  if (!active || active === document.body || root.contains(active)) return true;
  return Boolean(active.closest('#prompt, #search'));
}

function focusCard(index) {
  const nodes = cards.children;
  if (!nodes.length) return;
  focusIndex = Math.max(0, Math.min(index, nodes.length - 1));
  updateTabStops();
  nodes[focusIndex].focus({ preventScroll: false });
  nodes[focusIndex].scrollIntoView({ block: 'nearest' });
}

// ------------------------------------------------------------------------------------------------- labelling
function setLabel(index, value, advance) {
  const card = (shown.batch || [])[index];
  if (!card) return;
  if (value) labels[card.id] = value;
  else delete labels[card.id];
  if (value <= 0) more.delete(card.id);
  paintCard(cards.children[index], card, index);
  if (advance) focusCard(index + 1);
}

function toggleMore(index, advance) {
  const card = (shown.batch || [])[index];
  if (!card || card.audit) return; // a check image only gets a label: its neighbours are no check

  if (more.has(card.id)) more.delete(card.id);
  else {
    more.add(card.id);
    labels[card.id] = 1;
  }
  paintCard(cards.children[index], card, index);
  if (advance) focusCard(index + 1);
}

function markRest() {
  (shown.batch || []).forEach((card, index) => {
    if (!labels[card.id]) setLabel(index, -1, false);
  });
}

// ------------------------------------------------------------------------------------------------- actions
function setBusy(action) {
  busy = action;
  root.toggleAttribute('data-busy', Boolean(action));
  if (action === 'train') trainButton.textContent = 'Training…';
}

function act(name, data) {
  if (busy) return;
  setBusy(name);
  drawBar();
  trigger(name, data);
}

function givenLabels() {
  const batchIds = new Set((shown.batch || []).map((c) => c.id));
  const given = {};
  for (const [id, value] of Object.entries(labels)) if (batchIds.has(id)) given[id] = value;
  return given;
}

function train() {
  if (!shown || !shown.stats || busy) return;
  if (checking()) {
    act('check', { labels: givenLabels() });
    return;
  }
  const batchIds = new Set((shown.batch || []).map((c) => c.id));
  act('train', { labels: givenLabels(), more: [...more].filter((id) => batchIds.has(id)) });
}

function undo() {
  if (checking()) act('check', { labels: {}, skip: true });
  else if (shown && shown.stats && shown.stats.undo) act('undo', {});
  else if (shown && shown.stats) {
    notice.hidden = false;
    notice.textContent = 'Nothing to undo yet: train a round first.';
  }
}

function startCheck() {
  // The labels set on the batch on screen go along: they are kept (not trained on yet) while the check is shown.
  if (shown && shown.stats && !checking()) act('audit', { labels: givenLabels() });
}

function askRestart() {
  const n = shown && shown.stats ? shown.stats.labels : 0;
  confirmText.textContent = n
    ? `Start over with the prompt above? Your ${count(n)} labels are set aside; Undo brings them back. `
    : 'Start over with the prompt above? ';
  confirmBox.hidden = false;
  confirmBox.querySelector('.ct-confirm-yes').focus();
}

function closeConfirm(refocus) {
  if (confirmBox.hidden) return;
  confirmBox.hidden = true;
  if (refocus) restartButton.focus();
}

function restart() {
  confirmBox.hidden = true;
  act('restart', {});
}

function toggleTray(force) {
  const open = force === undefined ? !bar.hasAttribute('data-open') : force;
  bar.toggleAttribute('data-open', open);
  trayButton.setAttribute('aria-expanded', String(open));
}

function toggleKeys(force) {
  keysPanel.hidden = force === undefined ? !keysPanel.hidden : !force;
  if (!keysPanel.hidden) keysPanel.querySelector('button').focus();
  else focusCard(focusIndex);
}

function columns() {
  const nodes = [...cards.children];
  if (!nodes.length) return 1;
  const top = nodes[0].offsetTop;
  const row = nodes.findIndex((n) => n.offsetTop !== top);
  return row === -1 ? nodes.length : row;
}

root.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === 'Escape') {
    if (!keysPanel.hidden) toggleKeys(false);
    closeConfirm(true);
    return;
  }
  const onCard = event.target.classList && event.target.classList.contains('ct-card');
  const onButton = event.target.tagName === 'BUTTON';
  const index = onCard ? [...cards.children].indexOf(event.target) : focusIndex;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const handled = (() => {
    switch (key) {
      case 'Enter':
        if (onButton) return false; // a focused button clicks itself
        train();
        return true;
      case 'u': if (!checking()) undo(); return true; // skipping a check takes a click, not a stray key
      case '?': toggleKeys(); return true;
      case 'x': markRest(); return true;
    }
    if (!onCard) return false;
    switch (key) {
      case 'ArrowRight': case 'j': focusCard(index + 1); return true;
      case 'ArrowLeft': case 'k': focusCard(index - 1); return true;
      case 'ArrowDown': focusCard(index + columns()); return true;
      case 'ArrowUp': focusCard(index - columns()); return true;
      case 'Home': focusCard(0); return true;
      case 'End': focusCard(cards.children.length - 1); return true;
      case 'y': setLabel(index, 1, true); return true;
      case 'n': setLabel(index, -1, true); return true;
      case ' ': setLabel(index, 0, true); return true;
      case 'm': toggleMore(index, true); return true;
    }
    if (/^[1-5]$/.test(key)) {
      setLabel(index, STEPS[Number(key) - 1], true);
      return true;
    }
    return false;
  })();
  if (handled) event.preventDefault();
});

// A refused action (an error message from the server) changes nothing on screen; only the busy state ends.
document.addEventListener('ct-idle', () => { setBusy(null); drawBar(); });

draw(props.value);
watch('value', () => draw(props.value));
