/** Shared prefixes in the forward pass against forked copies (CPU). */
import { definePrefixSuites } from '../helpers/prefix-suite.js';

definePrefixSuites({ backend: 'cpu' });
