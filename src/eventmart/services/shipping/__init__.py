"""shipping: shipments for confirmed orders, dispatched and delivered by a fulfillment."""
