import { Command } from 'commander';
import { bootOrExit } from '#processes';
import { registerModelCommands } from './model-commands.js';
import { registerRunCommands } from './run-commands.js';
import { runUp, type UpOptions } from './up.js';

const program = new Command('dijiang')
  .description('DiJiang inference cluster: models, local cluster, batch jobs')
  .showHelpAfterError();

program
  .command('up')
  .description(
    'Start the local cluster: a managed redis-server (unless REDIS_URL, REDIS_SENTINELS or ' +
      'REDIS_CLUSTER_NODES is set), the gateway and WORKERS worker processes. Ctrl-C stops ' +
      'everything.',
  )
  .option(
    '--redis-sentinel',
    'make the managed Redis a primary, a replica and three sentinels, and run the gateway and ' +
      'workers in Sentinel mode (as MANAGED_REDIS=sentinel)',
  )
  .action((options: UpOptions) => runUp(options));

registerModelCommands(program);
registerRunCommands(program);

bootOrExit(async () => {
  await program.parseAsync();
});
