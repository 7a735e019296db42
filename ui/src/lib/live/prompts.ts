/**
 * Prompts tasks put to the operator, as the Live screen shows them: the list the console
 * gives (`list_prompts`), kept current by `prompt` and `prompt_answered` run events.
 */
import type { PromptView, RunEvent } from '../api/types';

export class LivePrompts {
  private byId = new Map<number, PromptView>();

  /** Replaces what is known with the console's list. */
  load(list: PromptView[]) {
    this.byId = new Map(list.map((p) => [p.id, p]));
  }

  /** Applies one run event; true when the waiting prompts changed. */
  apply(ev: RunEvent): boolean {
    if (ev.type === 'prompt') {
      this.byId.set(ev.prompt.id, ev.prompt);
      return true;
    }
    if (ev.type === 'prompt_answered') return this.byId.delete(ev.id);
    return false;
  }

  /** The prompt was answered here. */
  answered(id: number) {
    this.byId.delete(id);
  }

  /** Waiting prompts, oldest first. */
  list(): PromptView[] {
    return [...this.byId.values()].sort((a, b) => a.id - b.id);
  }

  /** Whether an answer is acceptable before sending it: a choice, or text the pattern takes. */
  static check(p: PromptView, answer: string): string | null {
    if (p.choices.length) return p.choices.includes(answer) ? null : `choose one of: ${p.choices.join(', ')}`;
    if (p.pattern != null) {
      let re: RegExp;
      try {
        re = new RegExp(`^(?:${p.pattern})$`);
      } catch {
        return null; // the console checks it
      }
      return re.test(answer) ? null : `the answer must match ${p.pattern}`;
    }
    return null;
  }
}
