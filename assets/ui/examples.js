// Example prompts taken from the collection in use (its captions or class names), as buttons under the prompt.
// props.value: a list of prompts. A click sends trigger('example', {prompt}).
const root = element.querySelector('.ct-examples');

function draw() {
  const prompts = Array.isArray(props.value) ? props.value : [];
  root.replaceChildren();
  if (!prompts.length) return;
  const label = document.createElement('span');
  label.textContent = 'Try:';
  root.append(label);
  for (const prompt of prompts) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = prompt;
    button.addEventListener('click', () => trigger('example', { prompt }));
    root.append(button);
  }
}

draw();
watch('value', draw);
