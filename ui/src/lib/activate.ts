/**
 * `use:activate`: a row or header that acts on click is reachable by Tab and acts on
 * Enter (and Space), as a button would.
 */
export function activate(node: HTMLElement) {
  if (!node.hasAttribute('tabindex')) node.tabIndex = 0;
  const onKey = (e: KeyboardEvent) => {
    if (e.target !== node || (e.key !== 'Enter' && e.key !== ' ')) return;
    e.preventDefault();
    node.click();
  };
  node.addEventListener('keydown', onKey);
  return {
    destroy() {
      node.removeEventListener('keydown', onKey);
    },
  };
}
