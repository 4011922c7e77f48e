/**
 * Examples shown under `--help` for the commands that do not carry their own (the others add
 * theirs where they are defined). cli/help.test.ts checks that every command has one.
 */
export const EXAMPLES: Record<string, string[]> = {
  'attest audit': ['securegate attest audit', 'securegate attest audit --json'],
  'account show': ['securegate account', 'securegate account show --json'],
  'account members': ['securegate account members'],
  'account remove-member': ['securegate account remove-member usr_1a2b3c4d5e6f7a8b'],
  'account set-role': ['securegate account set-role usr_1a2b3c4d5e6f7a8b owner', 'securegate account set-role usr_1a2b3c4d5e6f7a8b member --projects proj_team_b'],
  'account tokens': ['securegate account tokens --json'],
  'account token-create': ['securegate account token-create "github actions" --role member'],
  'account token-revoke': ['securegate account token-revoke tok_1a2b3c4d5e6f7a8b'],
  'projects list': ['securegate projects list'],
  'accounts list': ['securegate accounts list --json'],
  'accounts set-plan': ['securegate accounts set-plan acct_1a2b3c4d5e6f7a8b pro'],
  logout: ['securegate logout', 'securegate logout --all   # also forget the owner signing key'],
  'keys list': ['securegate keys list', 'securegate keys list --json'],
  'keys show': ['securegate keys show key_1a2b3c4d5e6f7a8b9c0d'],
  'keys lock': ['securegate keys lock key_1a2b3c4d5e6f7a8b9c0d --ip 203.0.113.7'],
  'keys bind-device': ['securegate keys bind-device key_1a2b3c4d5e6f7a8b9c0d   # this machine\'s fingerprint'],
  'keys revoke': ['securegate keys revoke key_1a2b3c4d5e6f7a8b9c0d'],
  'keys unsuspend': ['securegate keys unsuspend key_1a2b3c4d5e6f7a8b9c0d'],
  'keys activate': ['securegate keys activate key_1a2b3c4d5e6f7a8b9c0d'],
  kill: ['securegate kill key_1a2b3c4d5e6f7a8b9c0d   # every request refused from now on'],
  repin: ['securegate repin key_1a2b3c4d5e6f7a8b9c0d   # the next request binds IP (and device/city) again'],
  env: ['securegate env', 'securegate env --lang python --device'],
  usage: ['securegate usage --days 7', 'securegate usage --key key_1a2b3c4d5e6f7a8b9c0d --json'],
  'alerts list': ['securegate alerts list'],
  'alerts test': ['securegate alerts test'],
  'alerts remove': ['securegate alerts remove alt_1a2b3c4d5e6f7a8b'],
  'models alias': ['securegate models alias fast gpt-4o-mini'],
  providers: ['securegate providers', 'securegate providers --json'],
};
