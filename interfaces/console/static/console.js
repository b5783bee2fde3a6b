// Progressive enhancement only: every page works without this file.
document.addEventListener("input", (event) => {
  const slider = event.target;
  if (slider.id !== "as-of-slider") return;
  const output = document.querySelector('output[for="as-of-slider"]');
  if (output) output.value = slider.value;
});
