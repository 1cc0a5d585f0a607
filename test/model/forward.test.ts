/** The native forward pass against the float64 reference on small random models (CPU, both ISAs). */
import { defineForwardSuites } from '../helpers/forward-suite.js';

defineForwardSuites({ backend: 'cpu', isas: ['auto', 'avx2'] });
