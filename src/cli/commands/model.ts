// PLACEHOLDER: replaced by the module that implements `vistyle model`.
import type { Command } from 'commander';

export function registerModelCommands(_program: Command): void {}
