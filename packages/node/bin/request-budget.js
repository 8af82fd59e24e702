#!/usr/bin/env node
'use strict';
// `npx request-budget …`: a file that exists before the build, so npm links the command in a
// fresh checkout too; the command itself is built into dist (src/cli.ts).
require('../dist/cli.js').runCommand();
