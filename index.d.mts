// Typings of the ES module entry (index.mjs): the same declarations as the CommonJS entry.
export * from './index.js'
import * as cjs from './index.js'
declare const _default: typeof cjs
export default _default
