package fleet

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MixAdmitted is the share of Mix objects that Mesh admits, in tenths.
const MixAdmitted = 7

// Mix is admission k of the load mix over Mesh(namespaces): per ten, 7 admitted (three
// covered InferenceServices, two covered Seldon Models, two VirtualServices publishing an
// InferenceService) and 3 denied (an InferenceService no policy selects, a Seldon Model and
// its VirtualService where no policy covers the Seldon envoy). admitted says which; the
// namespaces are spread by a stride so consecutive admissions touch different policies.
// namespaces must be at least UncoveredSeldonEvery.
func Mix(k, namespaces int) (obj client.Object, admitted bool) {
	spread := k * 7919 % namespaces
	ns := Namespace(spread)
	uncovered := UncoveredSeldonEvery - 1 + UncoveredSeldonEvery*(k%(namespaces/UncoveredSeldonEvery))
	switch k % 10 {
	case 0, 1, 2:
		obj = InferenceService(ns, "model")
	case 3, 4:
		obj = SeldonModel(Namespace(coveredFrom(spread, namespaces)), "seldon-model")
	case 5, 6:
		obj = ModelVirtualService(ns)
	case 7:
		obj = InferenceService(ns, "open")
	case 8:
		obj = SeldonModel(Namespace(uncovered), "seldon-model")
	case 9:
		obj = SeldonVirtualService(Namespace(uncovered), "seldon-model")
	}
	return obj, k%10 < MixAdmitted
}

// coveredFrom is the first namespace from i on whose Seldon Model is covered.
func coveredFrom(i, namespaces int) int {
	for !SeldonCovered(i) {
		i = (i + 1) % namespaces
	}
	return i
}
